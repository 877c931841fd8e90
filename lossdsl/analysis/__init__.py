"""The static analysis of a checked spec: value ranges, witnesses, gradient paths, diagnostics."""
