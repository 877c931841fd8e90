"""The version of lossdsl, in a module of its own so any module can name it without a cycle."""

__version__ = "0.1.0"
