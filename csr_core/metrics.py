"""Image-quality metrics on 8-bit sRGB: PSNR, SSIM and CIEDE2000 (numpy only).

Every function takes HxWx3 sRGB arrays and first quantises them to 8 bit, so scores agree across
dtypes and with published 8-bit figures: uint8 is used as is, uint16 becomes round(x / 257), float
becomes round(clip(x, 0, 1) * 255) (NaN counts as 0).

PSNR is capped at ``PSNR_CAP`` = 100 dB: identical images (a photo its editor left alone) score 100 dB,
not infinity, so one perfect pair cannot swamp a mean (8-bit images that differ at all score < 60 dB).
"""
from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 100.0
STRIP_PIXELS = 1 << 18  # pixels scored at a time: a 24 MP pair takes as little memory as a 0.3 MP one

__all__ = ["PSNR_CAP", "to_uint8", "psnr", "psnr_from_mse", "ssim", "srgb_to_lab", "ciede2000_lab", "delta_e2000_map",
           "delta_e2000", "score"]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Quantise an HxWx3 uint8 / uint16 / float [0,1] sRGB array to uint8 (see module doc)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.uint16:
        return np.round(x / 257.0).astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        return np.round(np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise TypeError(f"unsupported image dtype {x.dtype} (use uint8, uint16 or float in [0, 1])")


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_uint8(a), to_uint8(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _strips(h: int, w: int) -> list[tuple[int, int]]:
    """Row ranges [r0, r1) of about ``STRIP_PIXELS`` pixels each."""
    rows = max(1, STRIP_PIXELS // max(w, 1))
    return [(r0, min(r0 + rows, h)) for r0 in range(0, h, rows)]


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB of a mean squared error on a ``peak`` range, capped at ``PSNR_CAP`` (mse 0 gives the cap)."""
    mse = float(mse)
    return PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10.0 * math.log10(peak * peak / mse))


def psnr(a, b) -> float:
    """PSNR in dB with data range 255; identical images give ``PSNR_CAP`` (100 dB), never inf."""
    a, b = _pair(a, b)
    squares = sum(int(np.square(a[r0:r1].astype(np.int32) - b[r0:r1]).sum(dtype=np.int64))
                  for r0, r1 in _strips(*a.shape[:2]))
    return psnr_from_mse(squares / max(a.size, 1))


# SSIM as skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
# use_sample_covariance=False, data_range=255): scipy's gaussian_filter truncates at 3.5 sigma,
# i.e. radius int(3.5 * 1.5 + 0.5) = 5 (11 taps), filters with mode 'reflect', then skimage crops
# 5 px per border. Reflect-filter-then-crop equals a 'valid' filter on the unpadded image.
_R = 5
_G = np.exp(-0.5 * (np.arange(-_R, _R + 1) / 1.5) ** 2)
_G /= _G.sum()


def _blur_valid(x: np.ndarray, axis: int) -> np.ndarray:
    """11-tap gaussian along ``axis`` (-3 rows or -2 cols), 'valid' output; uses kernel symmetry."""
    n = x.shape[axis] - 2 * _R

    def tap(i):
        return x[(Ellipsis, slice(i, i + n)) + (slice(None),) * (-axis - 1)]

    y = _G[_R] * tap(_R)
    tmp = np.empty_like(y)
    for i in range(_R):
        np.add(tap(i), tap(2 * _R - i), out=tmp)
        tmp *= _G[i]
        y += tmp
    return y


def ssim(a, b) -> float:
    """Mean SSIM (Wang et al. 2004; 11x11 gaussian, sigma 1.5, K1=.01, K2=.03) over RGB channels.

    Matches skimage's structural_similarity (see above). Images smaller than 11 px on a side, which
    skimage rejects, are reflect-padded and scored without the border crop. Scored in strips of rows.
    """
    a, b = _pair(a, b)
    h, w = a.shape[:2]
    if min(h, w) < 2 * _R + 1:
        return float(_ssim_map(a, b).mean())
    total = 0.0
    for r0, r1 in _strips(h - 2 * _R, w):  # output rows r0..r1 need input rows r0..r1 + 2R
        total += float(_ssim_map(a[r0:r1 + 2 * _R], b[r0:r1 + 2 * _R]).sum())
    return total / ((h - 2 * _R) * (w - 2 * _R) * 3)


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two uint8 images ('valid' rows and columns; padded first if under 11 px)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    stack = np.stack([x, y, x * x, y * y, x * y])
    if min(a.shape[:2]) < 2 * _R + 1:
        stack = np.pad(stack, ((0, 0), (_R, _R), (_R, _R), (0, 0)), mode="symmetric")
    ux, uy, uxx, uyy, uxy = _blur_valid(_blur_valid(stack, -3), -2)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


# sRGB (IEC 61966-2-1) linear RGB -> XYZ, D65; rows sum to the D65 white below (Lindbloom).
_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                     [0.2126729, 0.7151522, 0.0721750],
                     [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_c = np.arange(256) / 255.0
_DECODE_LUT = np.where(_c <= 0.04045, _c / 12.92, ((_c + 0.055) / 1.055) ** 2.4)


def srgb_to_lab(rgb) -> np.ndarray:
    """8-bit sRGB -> CIELAB (D65 white, 2 deg observer), float64 HxWx3."""
    lin = _DECODE_LUT[to_uint8(rgb)]
    t = (lin @ (_RGB2XYZ / _WHITE_D65[:, None]).T)  # XYZ / Xn,Yn,Zn
    d = 6.0 / 29.0
    f = np.where(t > d ** 3, np.cbrt(t), t / (3 * d * d) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def ciede2000_lab(lab1, lab2) -> np.ndarray:
    """CIEDE2000 between Lab arrays (..., 3), kL=kC=kH=1, per Sharma, Wu & Dalal (2005)."""
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    L1, a1, b1 = np.moveaxis(lab1, -1, 0)
    L2, a2, b2 = np.moveaxis(lab2, -1, 0)
    cbar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(cbar7 / (cbar7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.where(c1p == 0, 0.0, np.degrees(np.arctan2(b1, a1p)) % 360)
    h2p = np.where(c2p == 0, 0.0, np.degrees(np.arctan2(b2, a2p)) % 360)
    achromatic = c1p * c2p == 0

    dlp, dcp, dh = L2 - L1, c2p - c1p, h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(achromatic, 0.0, dh)
    dhp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))

    lbar, cbar = (L1 + L2) / 2, (c1p + c2p) / 2
    hs = h1p + h2p
    hbar = np.where(np.abs(h1p - h2p) <= 180, hs / 2, np.where(hs < 360, (hs + 360) / 2, (hs - 360) / 2))
    hbar = np.where(achromatic, hs, hbar)
    r = np.radians
    t = (1 - 0.17 * np.cos(r(hbar - 30)) + 0.24 * np.cos(r(2 * hbar))
         + 0.32 * np.cos(r(3 * hbar + 6)) - 0.20 * np.cos(r(4 * hbar - 63)))
    dtheta = 30 * np.exp(-(((hbar - 275) / 25) ** 2))
    rc = 2 * np.sqrt(cbar ** 7 / (cbar ** 7 + 25.0 ** 7))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbar, 1 + 0.015 * cbar * t
    rt = -np.sin(r(2 * dtheta)) * rc
    tl, tc, th = dlp / sl, dcp / sc, dhp / sh
    return np.sqrt(tl * tl + tc * tc + th * th + rt * tc * th)


def delta_e2000_map(a, b) -> np.ndarray:
    """Per-pixel CIEDE2000 between two sRGB images, float64 HxW."""
    a, b = _pair(a, b)
    return ciede2000_lab(srgb_to_lab(a), srgb_to_lab(b))


def delta_e2000(a, b) -> float:
    """Mean CIEDE2000 over pixels (in strips of rows)."""
    a, b = _pair(a, b)
    h, w = a.shape[:2]
    total = sum(float(delta_e2000_map(a[r0:r1], b[r0:r1]).sum()) for r0, r1 in _strips(h, w))
    return total / max(h * w, 1)


def score(pred, target) -> dict[str, float]:
    """All three metrics: {'psnr': dB, 'ssim': mean SSIM, 'delta_e': mean CIEDE2000}."""
    pred, target = _pair(pred, target)
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target),
            "delta_e": delta_e2000(pred, target)}
