"""LPIPS perceptual loss (Zhang et al. 2018) through the ``lpips`` package, built without any download.

``lpips.LPIPS(pretrained=True)`` reads its linear layers from files the package ships, but its
backbone calls torchvision's ``alexnet(pretrained=True)`` / ``vgg16(pretrained=True)``, which downloads
``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` into ``$TORCH_HOME/hub/checkpoints`` when absent.
:func:`build_lpips_network` instead finds both files first (a clear ``FileNotFoundError`` otherwise,
see :mod:`restorevar_plugin.checkpoints`), builds ``lpips.LPIPS`` with a random backbone and random
linear layers (``pnet_rand=True, pretrained=False``: nothing is read or fetched), then loads the
torchvision backbone file and the linear-layer file with one strict ``load_state_dict``. The values
are those of ``lpips.LPIPS(pretrained=True, net=...)`` with the same files; the network is frozen
and stays in eval mode (its linear layers have dropout).

``LPIPSLoss`` with ``loss_weight: 0`` is an error: the model decides whether to build the loss from its
weight, and a zero-weight LPIPS would only load a backbone for nothing.
"""
import warnings
from pathlib import Path

import lpips
from basicsr.losses.loss_util import reduce_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from restorevar_plugin.checkpoints import (
    load_state_dict,
    resolve_checkpoint,
    resolve_pretrained_file,
)
from restorevar_plugin.losses.loss_utils import (
    check_image_pair,
    check_reduction,
    parse_input_range,
    rescale,
)

LPIPS_RANGE = (-1.0, 1.0)
# Smallest image side each backbone accepts: AlexNet's stride-4 conv and two 3x3/2 max-pools run before its
# last LPIPS layer, VGG16 has four 2x2 max-pools; smaller images fail inside the pooling.
MIN_IMAGE_SIZE = {'alex': 31, 'vgg': 16}
LPIPS_NETS = tuple(MIN_IMAGE_SIZE)


def default_linear_weights(net):
    """The LPIPS v0.1 linear-layer file shipped inside the ``lpips`` package for ``net``."""
    return Path(lpips.__file__).parent / 'weights' / 'v0.1' / f'{net}.pth'


def _backbone_state(network, backbone_file):
    """Map a torchvision ``features.N.*`` state dict onto the ``net.sliceK.N.*`` keys of ``lpips.LPIPS``."""
    torchvision_state, _ = load_state_dict(backbone_file)
    state = {}
    for key in network.net.state_dict():
        source = 'features.' + key.split('.', 1)[1]
        if source not in torchvision_state:
            raise ValueError(f'{backbone_file}: not a torchvision {network.pnet_type} state dict, {source!r} is '
                             f'missing (found {sorted(torchvision_state)[:4]}...)')
        state[f'net.{key}'] = torchvision_state[source]
    return state


def build_lpips_network(net='alex', lpips_weights_path=None, backbone_weights_path=None):
    """Frozen ``lpips.LPIPS`` (v0.1) in eval mode, its files found on disk first; never downloads.

    Args:
        net (str): ``'alex'`` (the RestoreVAR evaluation) or ``'vgg'``.
        lpips_weights_path (str | Path | None): Linear-layer file; ``None`` = the one the package ships.
        backbone_weights_path (str | Path | None): torchvision backbone state dict; ``None`` =
            ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` (or ``vgg16-397923af.pth``).

    Returns:
        lpips.LPIPS: Maps two ``(B, 3, H, W)`` tensors in [-1, 1] to distances ``(B, 1, 1, 1)``.

    Raises:
        ValueError: unknown ``net``, or a file whose keys do not fit the network.
        FileNotFoundError: a weight file is missing (naming it, where it was looked for, where to get it).
    """
    if net not in LPIPS_NETS:
        raise ValueError(f'LPIPS: net must be one of {LPIPS_NETS}, got {net!r}')
    backbone_file = resolve_pretrained_file(f'lpips_{net}', backbone_weights_path)
    linear_file = resolve_checkpoint(default_linear_weights(net) if lpips_weights_path is None else lpips_weights_path)
    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated ``pretrained=`` argument
        warnings.filterwarnings('ignore', category=UserWarning, module='torchvision')
        network = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    linear_state, _ = load_state_dict(linear_file)
    state = {**network.state_dict(), **_backbone_state(network, backbone_file), **linear_state}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f'cannot load LPIPS {net} weights from {backbone_file} (backbone) and {linear_file} '
                         f'(linear layers): {error}') from error
    return network.eval().requires_grad_(False)


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """``loss_weight * LPIPS(pred, target)``: gradients flow to the inputs, never to the frozen network.

    Args:
        loss_weight (float): Multiplier, > 0 (leave the loss out of the options instead of using 0).
        net (str): ``'alex'`` | ``'vgg'``.
        input_range (Sequence[float]): ``(low, high)`` of the inputs, e.g. ``(0, 1)`` (BasicSR) or ``(-1, 1)``;
            inputs are mapped to [-1, 1], the range LPIPS is defined on.
        reduction (str): ``'mean'`` | ``'sum'`` | ``'none'`` over the batch (``'none'`` returns ``(B,)``).
        lpips_weights_path (str | None): See :func:`build_lpips_network`.
        backbone_weights_path (str | None): See :func:`build_lpips_network`.
    """

    def __init__(self, loss_weight=1.0, net='alex', input_range=(0, 1), reduction='mean', lpips_weights_path=None,
                 backbone_weights_path=None):
        super().__init__()
        if not loss_weight > 0:
            raise ValueError(f'LPIPSLoss: loss_weight must be > 0, got {loss_weight!r}; to disable the loss, leave '
                             f'it out of the options (the model builds it only for a positive weight)')
        check_reduction(reduction, 'LPIPSLoss')
        self.loss_weight = loss_weight
        self.input_range = parse_input_range(input_range, 'LPIPSLoss')
        self.reduction = reduction
        self.network = build_lpips_network(net, lpips_weights_path, backbone_weights_path)
        self.min_size = MIN_IMAGE_SIZE[net]

    def train(self, mode=True):
        """Switch this module's mode while keeping the LPIPS network (with dropout) in eval mode."""
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, pred, target):
        """``loss_weight * reduce(LPIPS)``; ``pred``, ``target``: ``(B, 3, H, W)`` in ``input_range``, sides >= 31."""
        check_image_pair(pred, target, 'LPIPSLoss', min_size=self.min_size)
        if pred.shape[1] != 3:
            raise ValueError(f'LPIPSLoss: inputs must have 3 (RGB) channels, got {pred.shape[1]}')
        distances = self.network(rescale(pred, self.input_range, LPIPS_RANGE),
                                 rescale(target, self.input_range, LPIPS_RANGE))
        return self.loss_weight * reduce_loss(distances.flatten(), self.reduction)
