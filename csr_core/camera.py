"""Camera files: RAW through LibRaw (rawpy, extra ``raw``), HEIF/HEIC through libheif (pillow-heif,
extra ``heif``). AVIF is read by ``csr_core.image_io`` (Pillow; libavif through imagecodecs when deep).

A RAW is developed neutrally, close to how FiveK's inputs look, so the styles apply as trained:
as-shot white balance, no auto-brightening, no creative curve, highlights clipped, LibRaw's AHD
demosaic, sRGB primaries and the sRGB tone curve, 16-bit, a DNG cut to its DefaultCrop, turned
upright as LibRaw reads the file's orientation. HEIF keeps its bit depth (10/12-bit as uint16) and is
turned upright by libheif (irot/imir).
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np

from . import native_stderr
from .errors import install_command

__all__ = ["RAW_EXTENSIONS", "HEIF_EXTENSIONS", "develop_raw", "decode_heif", "sniff"]

RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
                  ".rw2", ".rwl", ".pef", ".srw", ".3fr", ".erf", ".kdc", ".dcr", ".mrw", ".mos", ".iiq",
                  ".x3f", ".raw")
HEIF_EXTENSIONS = (".heic", ".heif", ".hif", ".avif")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")


class MissingExtra(Exception):
    """The decoder for this file type is an optional extra that is not installed."""


class Unreadable(ValueError):
    """The file is damaged or not one the decoder reads (the message says which)."""


def sniff(data: bytes, name: str) -> str | None:
    """'RAW', 'HEIF' or 'AVIF' from the file's signature (and, for TIFF-based RAWs, its name)."""
    if data[4:8] == b"ftyp":
        size = int.from_bytes(data[:4], "big")
        brands = [data[i:i + 4] for i in range(8, min(max(size, 16), 256), 4) if i != 12]
        if b"crx " in brands:
            return "RAW"  # Canon CR3
        if b"avif" in brands or b"avis" in brands:
            return "AVIF"
        if any(b in brands for b in _HEIF_BRANDS):
            return "HEIF"
        return None
    if (data[:15] == b"FUJIFILMCCD-RAW" or data[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\0")
            or data[6:14] == b"HEAPCCDR" or data[:4] in (b"FOVb", b"\0MRM")):
        return "RAW"
    is_tiff = data[:4] in (b"II*\0", b"MM\0*")
    if (is_tiff and data[8:10] == b"CR") or name.lower().endswith(RAW_EXTENSIONS):
        return "RAW"
    return None


#: ``check_size(width, height, sample_bytes, decoder_bytes)`` vets a declared size before decoding:
#: the result's bytes a sample and what the decoder allocates.
CheckSize = Callable[[int, int, int, int], None]


def develop_raw(data: bytes, check_size: CheckSize, *, default_crop: bool = False) -> tuple[np.ndarray, int]:
    """HxWx3 uint16 sRGB pixels of a RAW file (see the module docstring), not yet turned upright, and the
    EXIF orientation that turns them. ``default_crop``: cut to the DNG's DefaultCrop (the image area the
    DNG specification defines; LibRaw develops the whole sensor area)."""
    try:
        import rawpy
    except ImportError:
        raise MissingExtra(f"RAW files need the 'raw' extra ({install_command('raw')})") from None
    with native_stderr.libraw_quiet():
        raw = rawpy.RawPy()
        try:
            raw.open_buffer(io.BytesIO(data))
        except rawpy.LibRawError as exc:
            raise Unreadable(f"not a RAW file LibRaw can read ({type(exc).__name__})") from None
        with raw:
            sizes = raw.sizes
            # LibRaw holds the raw mosaic (2 bytes a pixel), its 4-channel image (8) and the RGB result (6)
            check_size(sizes.width, sizes.height, 2, 2 * sizes.raw_width * sizes.raw_height
                       + 14 * sizes.width * sizes.height)
            check_size(sizes.raw_width, sizes.raw_height, 2, 0)
            try:
                raw.unpack()
                rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, bright=1.0, output_bps=16,
                                      gamma=(2.4, 12.92), output_color=rawpy.ColorSpace.sRGB,
                                      highlight_mode=rawpy.HighlightMode.Clip, user_flip=0,
                                      demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD)
            except rawpy.LibRawIOError:
                raise Unreadable("damaged or truncated RAW file: its image data ends early") from None
            except rawpy.LibRawUnsufficientMemoryError:
                raise MemoryError from None
            except rawpy.LibRawError as exc:
                raise Unreadable(f"damaged RAW file ({type(exc).__name__})") from None
            # LibRaw counts the crop from the sensor's corner, the result from the active area's
            top = getattr(sizes, "crop_top_margin", 0) - sizes.top_margin
            left = getattr(sizes, "crop_left_margin", 0) - sizes.left_margin
            height, width = getattr(sizes, "crop_height", 0), getattr(sizes, "crop_width", 0)
            if default_crop and height > 0 and width > 0 and min(top, left) >= 0 and top + height <= rgb.shape[0] \
                    and left + width <= rgb.shape[1]:
                rgb = rgb[top:top + height, left:left + width]
            return rgb, int("12435867"[sizes.flip & 7])  # LibRaw's flip (dcraw's) as an EXIF orientation


def decode_heif(data: bytes, check_size: CheckSize) -> np.ndarray:
    """HxWx3 (or x4 with alpha) pixels of a HEIF/HEIC file's primary image, uint8 or uint16."""
    try:
        import pillow_heif
    except ImportError:
        raise MissingExtra(f"HEIC/HEIF files need the 'heif' extra ({install_command('heif')})") from None
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    sample = 2 if heif.info.get("bit_depth", 8) > 8 else 1
    width, height = heif.size
    # libheif's decoded YCbCr planes (up to 3 samples a pixel) and the interleaved result
    check_size(width, height, sample, (3 + (4 if heif.has_alpha else 3)) * sample * width * height)
    return np.asarray(heif)
