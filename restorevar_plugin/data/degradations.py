"""Synthetic degradations of clean images: haze, rain, snow, low light, motion blur, and their mixes.

Every function takes an ``(H, W, 3)`` float32 RGB image in [0, 1] and a ``numpy.random.Generator``
and returns a new ``(H, W, 3)`` float32 image in [0, 1]; all randomness comes from the generator, so
a seed gives the same output. Sizes (streak length, flake size, blur length) scale with the shorter
image side, so 32-px test crops and 512-px images look alike.

* ``haze``: atmospheric scattering ``I = J t + A (1 - t)``, ``t = exp(-beta d)`` with a depth proxy
  ``d`` (a random far-at-the-top ramp plus a smooth random field), random airlight ``A`` and ``beta``.
* ``rain``: sparse seeds smeared by an oriented line kernel into streaks, screen-blended.
* ``snow``: two layers of Gaussian flakes (many small, few large) over a light veil.
* ``low_light``: ``gain * J ** gamma``, then Poisson shot noise and Gaussian read noise.
* ``blur``: a random camera-shake trajectory (random walk with inertia) rasterised into a kernel.
* ``noise15``, ``noise25``, ``noise50``: additive white Gaussian noise of that sigma (on the 0-255 scale),
  clipped and truncated to 8 bit, as PromptIR's denoising data (``utils/degradation_utils.py``).
* mixes: names joined by ``+`` (``'haze+rain'``, ``'low_light+blur'``), applied in the physical order
  of :data:`APPLY_ORDER` (blur during exposure, then the weather, then the dark sensor's noise).
"""
from functools import partial

import cv2
import numpy as np

APPLY_ORDER = ('blur', 'haze', 'rain', 'snow', 'low_light', 'noise15', 'noise25', 'noise50')


def _shorter_side(image):
    return min(image.shape[:2])


def _smooth_field(shape, rng, cells):
    """A smooth random field in [0, 1] of ``shape`` (bicubic upsampling of ``cells`` x ``cells`` noise)."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def haze_depth_proxy(shape, rng):
    """A plausible relative depth map ``(H, W)`` in [0, 1]: far at the top (random tilt) plus smooth variation."""
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    tilt = rng.uniform(-0.5, 0.5)
    ramp = 1.0 - (rows / max(height - 1, 1) + tilt * (cols / max(width - 1, 1) - 0.5))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    return 0.7 * ramp + 0.3 * _smooth_field(shape, rng, cells=4)


def add_haze(image, rng, beta_range=(0.6, 1.8), airlight_range=(0.7, 0.95)):
    """Haze by atmospheric scattering with a depth proxy; ``(H, W, 3)`` float32 in [0, 1] in and out."""
    depth = haze_depth_proxy(image.shape[:2], rng)
    transmission = np.exp(-rng.uniform(*beta_range) * depth)[..., None]
    airlight = rng.uniform(*airlight_range) + rng.uniform(-0.03, 0.03, size=3)
    return np.clip(image * transmission + airlight * (1.0 - transmission), 0, 1).astype(np.float32)


def line_kernel(length, angle_deg):
    """A normalised anti-aliased line of ``length`` px at ``angle_deg`` from vertical, in an odd square kernel."""
    size = int(length) | 1
    kernel = np.zeros((size, size), np.float32)
    center, half = size // 2, (length - 1) / 2.0
    dx, dy = np.sin(np.deg2rad(angle_deg)) * half, np.cos(np.deg2rad(angle_deg)) * half
    shift = 4
    start = (int(round((center - dx) * 2**shift)), int(round((center - dy) * 2**shift)))
    end = (int(round((center + dx) * 2**shift)), int(round((center + dy) * 2**shift)))
    cv2.line(kernel, start, end, 1.0, thickness=1, lineType=cv2.LINE_AA, shift=shift)
    return kernel / kernel.sum()


def add_rain(image, rng, coverage_range=(0.15, 0.4), length_range=(0.08, 0.2), angle_range=(-25.0, 25.0),
             intensity_range=(0.6, 0.9)):
    """Rain streaks (seed points smeared along one direction), screen-blended onto the image.

    ``coverage`` is the expected fraction of pixels a streak crosses (seed density times streak length).
    """
    height, width = image.shape[:2]
    length = max(3.0, rng.uniform(*length_range) * _shorter_side(image))
    seeds = (rng.random((height, width)) < rng.uniform(*coverage_range) / length).astype(np.float32)
    seeds *= rng.uniform(0.5, 1.0, size=(height, width)).astype(np.float32)
    streaks = cv2.filter2D(seeds, -1, line_kernel(length, rng.uniform(*angle_range)), borderType=cv2.BORDER_REFLECT)
    streaks = np.clip(streaks * length * 0.5 * rng.uniform(*intensity_range), 0, 1)[..., None]
    return np.clip(1.0 - (1.0 - image) * (1.0 - streaks), 0, 1).astype(np.float32)


def _flake_layer(shape, rng, coverage, radius):
    """Gaussian flakes of ``radius`` px (peak about 1) covering about ``coverage`` of the pixels."""
    density = coverage / (np.pi * max(radius, 0.5)**2)
    seeds = (rng.random(shape) < density).astype(np.float32) * rng.uniform(0.6, 1.0, size=shape).astype(np.float32)
    sigma = max(radius, 0.5)
    blurred = cv2.GaussianBlur(seeds, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(blurred * 2.0 * np.pi * sigma**2, 0, 1)


def add_snow(image, rng, small_coverage_range=(0.02, 0.06), large_coverage_range=(0.02, 0.06),
             veil_range=(0.05, 0.2)):
    """Snow: a light veil, then many small and a few large flakes composited towards white."""
    side = _shorter_side(image)
    veil = rng.uniform(*veil_range)
    out = image * (1.0 - veil) + veil * 0.9
    small = _flake_layer(image.shape[:2], rng, rng.uniform(*small_coverage_range), max(0.5, 0.006 * side))
    large = _flake_layer(image.shape[:2], rng, rng.uniform(*large_coverage_range), max(1.0, 0.02 * side))
    mask = np.clip(small + large, 0, 1)[..., None]
    return np.clip(out * (1.0 - mask) + rng.uniform(0.9, 1.0) * mask, 0, 1).astype(np.float32)


def add_low_light(image, rng, gamma_range=(1.5, 3.0), gain_range=(0.15, 0.45), photons_range=(200.0, 2000.0),
                  read_noise_range=(0.002, 0.01)):
    """Low light: ``gain * J ** gamma``, then Poisson shot noise (``photons`` per unit) and Gaussian read noise."""
    dark = rng.uniform(*gain_range) * np.power(image, rng.uniform(*gamma_range))
    photons = rng.uniform(*photons_range)
    noisy = rng.poisson(dark * photons) / photons + rng.normal(0.0, rng.uniform(*read_noise_range), image.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def motion_blur_kernel(size, rng, steps=64, inertia=0.85):
    """A random camera-shake kernel: a random walk with inertia, scaled to ``size`` px and splatted bilinearly.

    Returns:
        np.ndarray: ``(size, size)`` float32, non-negative, summing to 1.
    """
    angle = rng.uniform(0, 2 * np.pi)
    velocity = np.array([np.cos(angle), np.sin(angle)])
    points = np.zeros((steps, 2))
    for step in range(1, steps):
        turn = rng.normal(0.0, 1.0, size=2)
        velocity = inertia * velocity + (1.0 - inertia) * turn
        points[step] = points[step - 1] + velocity
    points -= points.mean(axis=0)
    extent = np.abs(points).max()
    points = points / max(extent, 1e-6) * (size - 1) / 2.0 + (size - 1) / 2.0
    kernel = np.zeros((size, size), np.float32)
    for x, y in points:
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                               (1, 1, fx * fy)):
            if 0 <= x0 + dx < size and 0 <= y0 + dy < size:
                kernel[y0 + dy, x0 + dx] += weight
    return kernel / kernel.sum()


def add_motion_blur(image, rng, length_range=(0.05, 0.12)):
    """Motion blur with a random trajectory kernel spanning ``length_range`` of the shorter side (at least 3 px)."""
    size = max(3, int(round(rng.uniform(*length_range) * _shorter_side(image))) | 1)
    kernel = motion_blur_kernel(size, rng)
    return np.clip(cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT), 0, 1).astype(np.float32)


def add_gaussian_noise(image, rng, sigma):
    """``clip(255 image + sigma N(0, 1), 0, 255)`` truncated to an integer, back in [0, 1] (PromptIR's noisy input)."""
    noisy = np.clip(image * 255.0 + rng.standard_normal(image.shape) * sigma, 0, 255).astype(np.uint8)
    return noisy.astype(np.float32) / 255.0


DEGRADATIONS = {
    'haze': add_haze,
    'rain': add_rain,
    'snow': add_snow,
    'low_light': add_low_light,
    'blur': add_motion_blur,
    'noise15': partial(add_gaussian_noise, sigma=15),
    'noise25': partial(add_gaussian_noise, sigma=25),
    'noise50': partial(add_gaussian_noise, sigma=50),
}


def parse_degradation(name):
    """Split ``'haze+rain'`` into its components in :data:`APPLY_ORDER`; ValueError for unknown names."""
    parts = [part.strip() for part in str(name).split('+')]
    unknown = [part for part in parts if part not in DEGRADATIONS]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError(f'degradation {name!r}: expected one of {", ".join(DEGRADATIONS)} or several joined by "+" '
                         f'(each once), e.g. "haze+rain"')
    return [part for part in APPLY_ORDER if part in parts]


def degrade(image, name, rng):
    """Apply the degradation ``name`` (single or ``+``-joined mix) to a clean image.

    Args:
        image (np.ndarray): ``(H, W, 3)`` float32 RGB in [0, 1].
        name (str): e.g. ``'snow'`` or ``'low_light+blur'``.
        rng (numpy.random.Generator): Source of all randomness.

    Returns:
        np.ndarray: ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'degrade: expected an (H, W, 3) image, got shape {image.shape}')
    out = image.astype(np.float32)
    for part in parse_degradation(name):
        out = DEGRADATIONS[part](out, rng)
    return out
