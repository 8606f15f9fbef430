"""Pixel value conventions: uint8 / uint16 / float32 sRGB arrays and float32 in [0, 1]."""
from __future__ import annotations

import numpy as np


def to_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float pixels -> float32 in [0, 1] (float input clipped, NaN -> 0)."""
    a = np.asarray(rgb)
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        return np.divide(a, np.float32(np.iinfo(a.dtype).max), dtype=np.float32)
    if a.dtype.kind == "f":
        return from_float(a, np.float32)
    raise ValueError(f"unsupported pixel dtype {a.dtype}")


def from_float(x: np.ndarray, dtype) -> np.ndarray:
    """float pixels -> ``dtype`` (uint8, uint16 or float32): clip to [0, 1] (NaN -> 0), scale, round."""
    dt = np.dtype(dtype)
    x = np.asarray(x, dtype=np.float32)
    if dt == np.float32:
        y = np.fmax(x, 0.0)  # fmax/fmin turn NaN into the bound
        return np.fmin(y, 1.0, out=y)
    if dt != np.uint8 and dt != np.uint16:
        raise ValueError(f"unsupported pixel dtype {dt}")
    top = np.float32(np.iinfo(dt).max)
    y = np.multiply(x, top, dtype=np.float32)
    np.fmax(y, 0.0, out=y)
    np.fmin(y, top, out=y)
    return np.rint(y, out=y).astype(dt, order="C")


def clipped_float(x: np.ndarray) -> np.ndarray:
    """float32 pixels clipped to [0, 1] (NaN -> 0): ``x`` itself when it already is (checked a strip
    at a time, so a retouched photo costs no full-size copy), else a clipped copy."""
    a = np.asarray(x)
    rows = max(1, (1 << 20) // max(a[:1].size, 1))
    if a.dtype == np.float32 and a.size and all(
            0 <= a[y:y + rows].min() and a[y:y + rows].max() <= 1 for y in range(0, len(a), rows)):
        return a  # (a NaN fails both comparisons)
    return from_float(a, np.float32)
