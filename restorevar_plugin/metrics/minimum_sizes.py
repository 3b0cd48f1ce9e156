"""The smallest image side each metric can score, so that ``basicsr check-data`` warns before a run.

A metric given a smaller image fails or returns ``nan`` (and a ``nan`` turns the whole set's mean into
``nan``). Sides measured on the implementations, for both image axes:

============================ =========================== =============================================
``val.metrics`` type         smallest side               why
============================ =========================== =============================================
``calculate_ssim_skimage``   7                           skimage's 7x7 uniform window
``calculate_ssim`` (BasicSR) 11 + 2 x ``crop_border``    11x11 Gaussian window, valid region only
``calculate_psnr`` (BasicSR) 1 + 2 x ``crop_border``     the border crop
``calculate_niqe`` (BasicSR) 96 + 2 x ``crop_border``    NIQE's 96x96 blocks
``calculate_lpips``          31 (``alex``), 16 (``vgg``) the backbone's strided convolutions and pools
``calculate_clipiqa``        31                          CLIP RN50's stem and pools
``calculate_musiq``          none                        pyiqa resizes every image to its scales
============================ =========================== =============================================
"""
from typing import NamedTuple

LPIPS_MIN_SIDES = {'alex': 31, 'vgg': 16}


class SizeRequirement(NamedTuple):
    """``side``: smallest height and width a metric can score; ``reason``: which metric and why."""
    side: int
    reason: str


def metric_requirement(label, metric_opt):
    """The :class:`SizeRequirement` of one ``val.metrics`` entry, or None when any size works.

    Args:
        label (str): The metric's key under ``val.metrics`` (used in the reason).
        metric_opt (dict): Its options (``type``, ``crop_border``, ``net`` ...).
    """
    kind = metric_opt.get('type')
    border = int(metric_opt.get('crop_border', 0) or 0)
    crop = f' with crop_border {border}' if border else ''
    if kind == 'calculate_ssim_skimage':
        return SizeRequirement(7, f'{label}: the 7x7 SSIM window')
    if kind == 'calculate_ssim':
        return SizeRequirement(11 + 2 * border, f"{label}: BasicSR's 11x11 SSIM window{crop}")
    if kind == 'calculate_psnr' and border:
        return SizeRequirement(1 + 2 * border, f'{label}: crop_border {border}')
    if kind == 'calculate_niqe':
        return SizeRequirement(96 + 2 * border, f"{label}: NIQE's 96x96 blocks{crop}")
    if kind == 'calculate_lpips':
        net = metric_opt.get('net', 'alex')
        if net in LPIPS_MIN_SIDES:
            return SizeRequirement(LPIPS_MIN_SIDES[net], f"{label}: LPIPS {net}'s backbone")
    if kind == 'calculate_clipiqa':
        return SizeRequirement(31, f"{label}: CLIPIQA's RN50 backbone")
    return None


def strictest_requirement(metrics_opt):
    """The largest :class:`SizeRequirement` over ``val.metrics`` (``{label: options}``), or None."""
    found = [metric_requirement(label, opt) for label, opt in (metrics_opt or {}).items()]
    found = [requirement for requirement in found if requirement is not None]
    return max(found, key=lambda requirement: requirement.side) if found else None
