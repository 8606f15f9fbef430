"""csr core: CSRNet photo retouching without any UI dependencies."""
__version__ = "0.1.0"
