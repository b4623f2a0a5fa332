"""puewatch: standards-grade PUE for GPU data centres."""

__version__ = "0.1.0"
