"""HDR photos (a PQ or HLG curve in a HEIF/AVIF's nclx box) tone-mapped to standard-range sRGB, so that
they are retouched and written as the photo a standard screen should show.

1. The signal becomes display light in cd/m2: PQ by SMPTE ST 2084's EOTF; HLG by ITU-R BT.2100's
   inverse OETF and its reference OOTF for a 1000 cd/m2 display (system gamma 1.2), which puts HLG's 75%
   signal at BT.2408's HDR reference white of 203 cd/m2.
2. The file's primaries (BT.2020 as a rule) become sRGB's (BT.709) in linear light, by the 3x3 matrix the
   caller measures with LittleCMS (``image_io``); colours outside sRGB are clipped to it.
3. Luminance is tone-mapped by the curve of Report ITU-R BT.2446-1's conversion method C (section 6.1.4):
   linear (x 0.83802) up to 69.85 cd/m2, then a logarithmic shoulder. It maps the HDR reference white
   (203 cd/m2) to 90.65% of SDR white and reaches SDR white at 332 cd/m2; brighter light is clipped.
   Each pixel's colour is scaled with its luminance, keeping its chromaticity as method C does.
4. sRGB's curve (IEC 61966-2-1) encodes the result in the photo's own sample type.

Nothing here needs more than numpy: the formulas are the published ones, a few lines each, and neither
OpenCV nor LittleCMS offers PQ, HLG or a tone curve (colour-science does, but would be a large dependency
for these few lines).
"""
from __future__ import annotations

import numpy as np

from .pixels import from_float, to_float

__all__ = ["CURVES", "to_sdr", "pq_to_nits", "hlg_to_nits", "tone_curve"]

#: The nclx transfer characteristics (ITU-T H.273) of HDR photos, by name.
CURVES = {16: "PQ", 18: "HLG"}
#: BT.2408's HDR reference white (diffuse white), cd/m2; SDR white is 100 cd/m2 in BT.2446.
REFERENCE_WHITE = 203.0
SDR_WHITE = 100.0

# SMPTE ST 2084
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# ITU-R BT.2100 HLG
_A, _B, _C = 0.17883277, 1 - 4 * 0.17883277, 0.5 - 0.17883277 * np.log(4 * 0.17883277)
_HLG_PEAK, _HLG_GAMMA = 1000.0, 1.2
_BT2020_Y = np.array([0.2627, 0.6780, 0.0593], np.float32)
# BT.2446-1 method C: k1, k3 and the SDR inflection point; k2 and k4 make the curve and its slope continuous
_K1, _K3, _SDR_IP = 0.83802, 0.74204, 58.535
_HDR_IP = _SDR_IP / _K1
_K2 = _SDR_IP * (1 - _K3)
_K4 = _SDR_IP - _K2 * np.log(1 - _K3)
_SRGB_Y = np.array([0.2126, 0.7152, 0.0722], np.float32)  # luminance of linear sRGB (BT.709)


def pq_to_nits(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 EOTF: a PQ signal in [0, 1] to display light in cd/m2 (0 to 10,000)."""
    e = np.power(np.clip(signal, 0, 1, dtype=np.float32), np.float32(1 / _M2))
    ratio = np.maximum(e - np.float32(_C1), 0) / (np.float32(_C2) - np.float32(_C3) * e)
    return np.float32(10000) * np.power(ratio, np.float32(1 / _M1))


def hlg_to_nits(signal: np.ndarray) -> np.ndarray:
    """BT.2100 HLG (HxWx3, or HxWx1 gray): inverse OETF to scene light, then the reference OOTF of a 1000
    cd/m2 display (Fd = 1000 * Ys ** 0.2 * E, Ys from BT.2020's luminance weights, or the gray sample)."""
    e = np.clip(signal, 0, 1, dtype=np.float32)
    low = e * e / np.float32(3)
    high = (np.exp((e - np.float32(_C)) / np.float32(_A)) + np.float32(_B)) / np.float32(12)
    scene = np.where(e <= 0.5, low, high).astype(np.float32)
    ys = scene[..., 0] if scene.shape[-1] == 1 else scene @ _BT2020_Y
    gain = np.float32(_HLG_PEAK) * np.power(ys, np.float32(_HLG_GAMMA - 1))
    return scene * gain[..., None]


def tone_curve(nits: np.ndarray) -> np.ndarray:
    """BT.2446-1 method C: HDR luminance (cd/m2) to SDR luminance as a fraction of SDR white, clipped at 1."""
    y = np.asarray(nits, np.float32)
    shoulder = np.float32(_K2) * np.log(np.maximum(y / np.float32(_HDR_IP) - np.float32(_K3), np.float32(1e-6)))
    sdr = np.where(y < _HDR_IP, np.float32(_K1) * y, shoulder + np.float32(_K4))
    return np.clip(sdr / np.float32(SDR_WHITE), 0, 1).astype(np.float32)


def to_sdr(colour: np.ndarray, curve: str, matrix: np.ndarray) -> np.ndarray:
    """HxWx3 (or HxWx1 gray) PQ- or HLG-coded samples (uint8/uint16) to sRGB-coded ones of the same type.

    ``matrix`` takes linear light in the file's primaries to linear sRGB (ignored for gray). Worked on in
    bands of about a million samples, so that the float copies stay small beside the photo.
    """
    out = np.empty(colour.shape, colour.dtype)
    gray = colour.shape[2] == 1
    rows = max(1, (1 << 20) // max(1, colour.shape[1] * colour.shape[2]))
    for top in range(0, colour.shape[0], rows):
        band = to_float(colour[top:top + rows])
        light = pq_to_nits(band) if curve == "PQ" else hlg_to_nits(band)
        if not gray:
            light = light @ np.asarray(matrix, np.float32).T
            np.maximum(light, 0, out=light)  # outside sRGB's gamut: clipped (BT.2408's simplest handling)
        y = light[..., 0] if gray else light @ _SRGB_Y
        scale = np.divide(tone_curve(y), y, out=np.zeros_like(y), where=y > 0)
        linear = np.minimum(light * scale[..., None], 1)
        out[top:top + rows] = from_float(_srgb_encode(linear), colour.dtype)
    return out


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1's curve, linear [0, 1] -> sRGB-coded [0, 1]."""
    high = np.float32(1.055) * np.power(np.maximum(linear, np.float32(0.0031308)), np.float32(1 / 2.4)) - 0.055
    return np.where(linear <= 0.0031308, linear * np.float32(12.92), high).astype(np.float32)
