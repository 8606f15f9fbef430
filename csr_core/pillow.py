"""Pillow, imported on first use (a JPEG, PNG or TIFF run never needs it), with its decompression-bomb
limit off: csr checks every image's size, and the bytes its decoder will allocate, before decoding
(``csr_core.image_io``), and Pillow's own check would warn about or refuse photos within csr's limit."""
from __future__ import annotations


def pil_image():
    """The ``PIL.Image`` module, its bomb limit off."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image
