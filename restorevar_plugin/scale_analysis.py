"""Scale-space analysis of the multi-scale VQVAE (paper Sec. 3.2, Fig. 2; Sec. 4.4, Fig. 9).

For a degraded image and its clean (GT) image, both are tokenized into ``S`` per-scale index maps, and the
first ``k`` ("coarse") scales are swapped between them:

============ ======================================================= ==========================
variant      indices                                                 paper column (Fig. 2)
============ ======================================================= ==========================
degraded_rec the degraded image's, all scales                        Degraded
gt_coarse    degraded's for scales ``< k``, GT's for scales ``>= k`` GT_coarse (degradation back)
gt_fine      GT's for scales ``< k``, degraded's for scales ``>= k`` GT_fine (stays mostly clean)
gt_rec       the GT image's, all scales                              GT
============ ======================================================= ==========================

Every variant is decoded from its indices (``decode_latent(indices_to_fhat(...))``), as in the paper, whose
first and last columns are reconstructions from the degraded and GT indices: the four panels then differ only
by which image each scale's tokens come from. PSNR (RestoreVAR protocol: scikit-image on RGB in [0, 1], no
crop) is measured against the GT image itself, together with the PSNR of the raw degraded input (``input``).
"""
from dataclasses import dataclass

import numpy as np
import torch

from restorevar_plugin.data.transforms import lanczos_resize
from restorevar_plugin.metrics.skimage_metric import psnr_skimage_tensor

VARIANTS = ('degraded_rec', 'gt_coarse', 'gt_fine', 'gt_rec')
PANEL_TITLES = {'degraded_rec': 'Degraded', 'gt_coarse': 'GT_coarse', 'gt_fine': 'GT_fine', 'gt_rec': 'GT'}
PSNR_COLUMNS = ('input', ) + VARIANTS


def default_coarse_scales(num_scales):
    """The default coarse/fine split: half of the scales, rounded down (5 of VAR's 10 scales)."""
    return num_scales // 2


def check_coarse_scales(coarse_scales, patch_nums, name='coarse_scales'):
    """Validate the number of leading scales counted as coarse; ``None`` gives :func:`default_coarse_scales`.

    Args:
        coarse_scales (int | None): k, the number of coarse scales.
        patch_nums (Sequence[int]): The VQVAE's scales.
        name (str): Option name used in error messages.

    Returns:
        int: k with ``1 <= k < S``.

    Raises:
        ValueError: k is not an integer in ``[1, S - 1]`` (or the VQVAE has a single scale).
    """
    num_scales = len(patch_nums)
    if num_scales < 2:
        raise ValueError(f'{name}: the scale analysis needs at least 2 scales; patch_nums is {tuple(patch_nums)}')
    if coarse_scales is None:
        return default_coarse_scales(num_scales)
    if isinstance(coarse_scales, bool) or not isinstance(coarse_scales, int) or not 1 <= coarse_scales < num_scales:
        raise ValueError(f'{name} must be an integer in [1, {num_scales - 1}] (the number of leading scales of '
                         f'patch_nums {tuple(patch_nums)} counted as coarse); got {coarse_scales!r}')
    return coarse_scales


def resize_to_resolution(image, size):
    """Lanczos-resize one image to ``size`` x ``size`` (the datasets' ``paper_512`` filter; aspect not kept).

    Args:
        image (Tensor): ``(3, H, W)`` in [0, 1].
        size (int): Target side.

    Returns:
        Tensor: ``(3, size, size)`` float32 in [0, 1] (``image`` itself when already that size).
    """
    if image.shape[-2:] == (size, size):
        return image
    array = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy(), dtype=np.float32)
    return torch.from_numpy(lanczos_resize(array, size, size)).permute(2, 0, 1)


@dataclass
class ScaleSwapResult:
    """What :func:`scale_swap_analysis` returns for a batch of B image pairs.

    Attributes:
        coarse_scales (int): k, the number of leading scales swapped.
        indices (dict[str, list[Tensor]]): Per variant of :data:`VARIANTS`, S LongTensors ``(B, pn * pn)``.
        images (dict[str, Tensor]): Per variant, the decoded ``(B, 3, R, R)`` images in [0, 1].
        psnr (dict[str, list[float]]): Per column of :data:`PSNR_COLUMNS` (``input`` = the raw degraded
            image), B PSNRs in dB to the GT image.
    """
    coarse_scales: int
    indices: dict
    images: dict
    psnr: dict

    def grid(self, index):
        """The Fig. 2 row of pair ``index``: ``Degraded | GT_coarse | GT_fine | GT`` side by side.

        Returns:
            Tensor: ``(3, R, 4 R)`` in [0, 1], all four panels decoded from indices.
        """
        return torch.cat([self.images[variant][index] for variant in VARIANTS], dim=-1)


def _check_pair(degraded, gt, size):
    for name, images in (('degraded', degraded), ('gt', gt)):
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise ValueError(f'{name} must have shape (B, 3, {size}, {size}) (the VQVAE resolution; see '
                             f'resize_to_resolution), got {tuple(images.shape)}')
    if degraded.shape[0] != gt.shape[0]:
        raise ValueError(f'degraded and gt must hold the same number of images, got {degraded.shape[0]} and '
                         f'{gt.shape[0]}')


@torch.no_grad()
def scale_swap_analysis(vqvae, degraded, gt, coarse_scales=None):
    """Tokenize degraded/GT pairs, swap their coarse and fine scales, decode, and measure PSNR to the GT.

    Args:
        vqvae (MultiScaleVQVAE): The tokenizer (its train/eval mode is left as it is; inference does not
            depend on it).
        degraded (Tensor): ``(B, 3, R, R)`` degraded images in [0, 1], ``R = patch_nums[-1] * downsample_factor``.
        gt (Tensor): ``(B, 3, R, R)`` clean images in [0, 1], on the same device.
        coarse_scales (int | None): k; ``None``: half of the scales, rounded down.

    Returns:
        ScaleSwapResult: Indices and images per variant, PSNRs per column (see the module docstring).

    Raises:
        ValueError: Bad shapes or k (see :func:`check_coarse_scales`).
    """
    k = check_coarse_scales(coarse_scales, vqvae.patch_nums)
    _check_pair(degraded, gt, vqvae.image_size)
    batch = degraded.shape[0]
    both = vqvae.img_to_indices(torch.cat([degraded, gt]) * 2 - 1)
    degraded_indices = [idx[:batch] for idx in both]
    gt_indices = [idx[batch:] for idx in both]
    indices = {
        'degraded_rec': degraded_indices,
        'gt_coarse': vqvae.swap_scales(degraded_indices, gt_indices, k),
        'gt_fine': vqvae.swap_scales(gt_indices, degraded_indices, k),
        'gt_rec': gt_indices,
    }
    images = {variant: (vqvae.decode_latent(vqvae.quantize.indices_to_fhat(idx)) + 1) / 2
              for variant, idx in indices.items()}
    compared = dict(images, input=degraded)
    psnr = {column: [psnr_skimage_tensor(compared[column][b], gt[b]) for b in range(batch)] for column in PSNR_COLUMNS}
    return ScaleSwapResult(k, indices, images, psnr)


def mean_rows(rows):
    """Mean PSNR per degradation (when the rows name one) and over all rows.

    Args:
        rows (list[dict]): Per-image rows with ``degradation`` (``''`` when unknown) and one value per
            column of :data:`PSNR_COLUMNS`.

    Returns:
        list[dict]: ``{'degradation', 'images', <columns>}`` per degradation in order of first appearance,
        then ``degradation='all'``.
    """
    groups = {}
    for row in rows:
        if row['degradation']:
            groups.setdefault(row['degradation'], []).append(row)
    groups['all'] = rows
    return [{'degradation': name, 'images': len(members),
             **{column: float(np.mean([row[column] for row in members])) for column in PSNR_COLUMNS}}
            for name, members in groups.items()]


def markdown_table(headers, rows):
    """A GitHub markdown table; floats are printed with 2 decimals."""
    cells = [[f'{value:.2f}' if isinstance(value, float) else str(value) for value in row] for row in rows]
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join(['---'] * len(headers)) + '|']
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in cells])


def summary_markdown(means):
    """The :func:`mean_rows` table in markdown, with the paper's column titles."""
    headers = ['degradation', 'images', 'input'] + [PANEL_TITLES[variant] for variant in VARIANTS]
    return markdown_table(headers, [[row['degradation'], row['images']] + [row[c] for c in PSNR_COLUMNS]
                                    for row in means])
