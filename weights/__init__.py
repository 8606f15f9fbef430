"""Built-in style weights (safetensors) and their manifest, installed as ``csr_core.weights``."""
