"""The package version, in a module of its own so that the modules that record it (checkpoint
metadata) need not import the package's entry points."""

__version__ = "0.1.0"
