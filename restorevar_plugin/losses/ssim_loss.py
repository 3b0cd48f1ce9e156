"""SSIM loss (``1 - SSIM``) for the decoder fine-tuning stage (paper §3.3.2: L1 + SSIM + perceptual + adversarial).

SSIM (Wang et al. 2004) is computed per channel with a separable Gaussian window and population
statistics, on inputs mapped to [0, 1] (so ``data_range = 1``), over the "valid" region (no padding),
then averaged over channels and positions. With the defaults (11x11 window, sigma 1.5, K1 0.01,
K2 0.03) this is exactly ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=...)``: skimage filters with a
radius-5 Gaussian and averages after cropping 5 border pixels, i.e. over the same valid region.

It is *not* the evaluation SSIM of the RestoreVAR/PromptIR tables (skimage's default 7x7 uniform window
with sample covariance, see :mod:`restorevar_plugin.metrics.protocols`): the Gaussian window is the
usual choice for a training loss (smoother gradients, no blocking).
"""
import torch
from basicsr.losses.loss_util import reduce_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

from restorevar_plugin.losses.loss_utils import (
    check_image_pair,
    check_reduction,
    parse_input_range,
    rescale,
)

UNIT_RANGE = (0.0, 1.0)


def gaussian_window(size, sigma):
    """Normalised 1D Gaussian window of ``size`` taps, float64, shape ``(size,)``."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-offsets**2 / (2 * sigma**2))
    return window / window.sum()


@LOSS_REGISTRY.register()
class SSIMLoss(nn.Module):
    """``loss_weight * (1 - SSIM(pred, target))``, differentiable, computed with two depthwise 1D convolutions.

    Statistics are computed in float32 whatever the input dtype (``E[x^2] - E[x]^2`` loses too much in
    fp16 under AMP).

    Args:
        loss_weight (float): Multiplier of the loss.
        window_size (int): Odd width of the Gaussian window (11 matches skimage for sigma 1.5).
        sigma (float): Standard deviation of the Gaussian window, in pixels.
        input_range (Sequence[float]): ``(low, high)`` of the inputs, e.g. ``(0, 1)`` (BasicSR) or ``(-1, 1)``
            (VQVAE decoder outputs); inputs are mapped to [0, 1] before SSIM, so the result does not depend
            on the range convention.
        k1 (float): SSIM stabiliser ``C1 = (k1 * 1)^2``.
        k2 (float): SSIM stabiliser ``C2 = (k2 * 1)^2``.
        reduction (str): ``'mean'`` | ``'sum'`` | ``'none'`` over the batch (``'none'`` returns ``(B,)``).
    """

    def __init__(self, loss_weight=1.0, window_size=11, sigma=1.5, input_range=(0, 1), k1=0.01, k2=0.03,
                 reduction='mean'):
        super().__init__()
        if not (isinstance(window_size, int) and window_size >= 3 and window_size % 2 == 1):
            raise ValueError(f'SSIMLoss: window_size must be an odd integer >= 3, got {window_size!r}')
        if sigma <= 0:
            raise ValueError(f'SSIMLoss: sigma must be positive, got {sigma!r}')
        check_reduction(reduction, 'SSIMLoss')
        self.loss_weight = loss_weight
        self.window_size = window_size
        self.input_range = parse_input_range(input_range, 'SSIMLoss')
        self.c1, self.c2 = k1**2, k2**2
        self.reduction = reduction
        self.register_buffer('window', gaussian_window(window_size, sigma).float(), persistent=False)

    def _local_mean(self, maps):
        """Gaussian-weighted local mean of every channel of ``(B, N, H, W)``; "valid" output ``(B, N, H', W')``."""
        channels = maps.shape[1]
        window = self.window.to(maps.dtype)
        horizontal = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        vertical = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        return F.conv2d(F.conv2d(maps, horizontal, groups=channels), vertical, groups=channels)

    def ssim_per_image(self, pred, target):
        """SSIM of each image pair.

        Args:
            pred (Tensor): ``(B, C, H, W)`` in ``input_range``, ``H, W >= window_size``.
            target (Tensor): Same shape and range as ``pred``.

        Returns:
            Tensor: ``(B,)`` float32, mean SSIM over channels and valid positions (1 for identical images).
        """
        check_image_pair(pred, target, 'SSIMLoss', min_size=self.window_size)
        x = rescale(pred.float(), self.input_range, UNIT_RANGE)
        y = rescale(target.float(), self.input_range, UNIT_RANGE)
        means = self._local_mean(torch.cat([x, y, x * x, y * y, x * y], dim=1))
        mu_x, mu_y, mean_xx, mean_yy, mean_xy = means.chunk(5, dim=1)
        var_x, var_y, cov_xy = mean_xx - mu_x**2, mean_yy - mu_y**2, mean_xy - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + self.c1) * (2 * cov_xy + self.c2) /
                    ((mu_x**2 + mu_y**2 + self.c1) * (var_x + var_y + self.c2)))
        return ssim_map.mean(dim=(1, 2, 3))

    def forward(self, pred, target):
        """``loss_weight * reduce(1 - SSIM)``; ``pred``, ``target``: ``(B, C, H, W)`` in ``input_range``."""
        return self.loss_weight * reduce_loss(1 - self.ssim_per_image(pred, target), self.reduction)
