"""The symbolic core: lowering to SymPy, stable rewrites, simplification, gradients."""
