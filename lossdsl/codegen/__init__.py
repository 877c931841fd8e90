"""Code generation: SymPy expressions to TensorFlow statements, and the module around them."""
