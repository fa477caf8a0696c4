"""calltap: passive call recorder."""

__version__ = "0.1.0"
