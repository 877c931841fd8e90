"""Verification of a compile: the generated TensorFlow function against SymPy's exact maths."""
