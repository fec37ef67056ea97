"""Plain, step-by-step transcription of the PartiNet (>= 1.0.1) / CryoSegNet denoiser.

This is the yardstick for ``converters.denoise``: every step in the documented order, with the
documented dtypes, numpy.fft in float64/complex128 for the Wiener step, and no shortcuts. It is
written from the description in ``shared/reference/pickers.md`` (sections B2 and C1), not copied.

Pipeline (input: a 2-D micrograph array, any real dtype; output: uint8, same shape):

1. float32 cast, ``cv2.GaussianBlur`` 9x9 with sigma 0 (OpenCV derives sigma 1.7), z-score with the
   global mean and standard deviation, ``transform`` (min-max to [0, 255], truncated to uint8).
2. ``cv2.fastNlMeansDenoising`` (h=10, templateWindowSize=7, searchWindowSize=21) on the uint8.
3. FFT Wiener filter, K = 30, kernel = outer product of a length-9 Gaussian window (std 3) with
   itself, normalised to sum 1, zero-padded at the top-left corner (so the result is circularly
   shifted by (-4, -4) px). Output float64, not rescaled.
4. CLAHE (clip 2.0, 16x16 tiles) on ``transform(wiener)``.
5. Guided filter (He et al.): input CLAHE/255, guidance wiener/255 (both float32), normalised
   ``cv2.boxFilter`` with ksize (20, 20) (CryoSegNet's "radius=20" is passed as the box size),
   eps = 0.1, output mean_a * guidance + mean_b, then ``transform``.

Constant images: ``transform`` returns zeros when max == min (PartiNet's guard). A constant input
has a zero standard deviation; PartiNet then divides 0 by 0 and casts NaN to uint8 (which gives 0
on x86). Here the z-scored image is defined as all zeros instead, which gives the same all-zero
output without relying on a NaN cast.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import windows

WIENER_K = 30.0
KERNEL_SIZE = 9
BOX_SIZE = 20
GUIDED_EPS = 0.1


def transform(image: np.ndarray) -> np.ndarray:
    """Min-max stretch to [0, 255] in the input's float dtype, then truncate to uint8."""
    lo = image.min()
    hi = image.max()
    if hi == lo:
        return np.zeros(image.shape, dtype=np.uint8)
    stretched = ((image - lo) / (hi - lo)) * 255
    return stretched.astype(np.uint8)


def standard_scaler(image: np.ndarray) -> np.ndarray:
    """Step 1: float32, Gaussian blur 9x9 (sigma from OpenCV), z-score, transform."""
    image = image.astype(np.float32)
    blurred = cv2.GaussianBlur(image, (KERNEL_SIZE, KERNEL_SIZE), 0)
    mean = np.mean(blurred)
    std = np.std(blurred)
    if std == 0:
        return transform(np.zeros_like(blurred))
    return transform((blurred - mean) / std)


def nl_means(image: np.ndarray) -> np.ndarray:
    """Step 2: OpenCV non-local means on the uint8 image."""
    return cv2.fastNlMeansDenoising(image, None, h=10, templateWindowSize=7, searchWindowSize=21)


def gaussian_kernel(size: int = KERNEL_SIZE) -> np.ndarray:
    """Outer product of a Gaussian window of length ``size`` and std ``size / 3``, sum 1."""
    window = windows.gaussian(size, std=size / 3).reshape(size, 1)
    kernel = window @ window.T
    return kernel / kernel.sum()


def wiener_filter(image: np.ndarray, kernel: np.ndarray, k: float = WIENER_K) -> np.ndarray:
    """Step 3: |ifft2(fft2(image) * conj(H) / (|H|^2 + K))| with H = fft2(kernel, s=shape)."""
    spectrum = np.fft.fft2(image)
    h = np.fft.fft2(kernel, s=image.shape)
    g = np.conj(h) / (np.abs(h) ** 2 + k)
    return np.abs(np.fft.ifft2(spectrum * g))


def clahe(image: np.ndarray) -> np.ndarray:
    """Step 4: CLAHE on the min-max stretched uint8 image."""
    equaliser = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(16, 16))
    return equaliser.apply(transform(image))


def guided_filter(
    source: np.ndarray, guidance: np.ndarray, box: int = BOX_SIZE, eps: float = GUIDED_EPS
) -> np.ndarray:
    """Step 5: He et al. guided filter with normalised box means of size ``box`` x ``box``."""
    p = source.astype(np.float32) / 255.0
    guide = guidance.astype(np.float32) / 255.0
    size = (box, box)
    mean_i = cv2.boxFilter(guide, -1, size)
    mean_p = cv2.boxFilter(p, -1, size)
    mean_ip = cv2.boxFilter(guide * p, -1, size)
    cov_ip = mean_ip - mean_i * mean_p
    mean_ii = cv2.boxFilter(guide * guide, -1, size)
    var_i = mean_ii - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = cv2.boxFilter(a, -1, size)
    mean_b = cv2.boxFilter(b, -1, size)
    return transform(mean_a * guide + mean_b)


def denoise_reference(image: np.ndarray, legacy_flip: bool = False) -> np.ndarray:
    """The whole pipeline on one 2-D array; ``legacy_flip`` applies PartiNet 1.0.0's ``.T`` and
    ``np.rot90`` first (equal to a vertical flip)."""
    image = np.asarray(image)
    if legacy_flip:
        image = np.rot90(image.T)
    scaled = standard_scaler(np.array(image))
    smoothed = nl_means(scaled)
    wiener = wiener_filter(smoothed, gaussian_kernel(), WIENER_K)
    equalised = clahe(wiener)
    return guided_filter(equalised, wiener)
