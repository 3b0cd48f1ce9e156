"""AWRaCLe (Rajagopalan and Patel, "AWRaCLe: All-Weather Image Restoration using Visual In-Context
Learning", AAAI 2025).

The official network of sudraj2002/AWRaCLe (``net/model.py``, class ``AWRaCLe``) with its parameter
names, ``clip.*`` included: 186,463,001 parameters with CLIP ViT-B/32 (151,277,313 of them CLIP's,
frozen). The CLIP model is built from its architecture with the ``clip`` package's ``CLIP`` class, never
downloaded: its weights come from the AWRaCLe checkpoint (``best.ckpt``, a Lightning checkpoint that
stores ``net.clip.*``) or from a local CLIP file loaded by the model (``path.pretrain_network_clip``).
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from clip.model import CLIP

from .layers.prompt_blocks import InContextBlock
from .layers.prompted_restormer import PromptedRestormer

CLIP_VIT_B32 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                    context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                    transformer_layers=12)
"""``clip.model.CLIP`` arguments of OpenAI's ViT-B/32 (what ``clip.load('ViT-B/32')`` builds)."""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

TINY_CONFIG = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2], prompt_dims=[8, 8, 16],
                   prompt_dim_head=8,
                   clip_config=dict(embed_dim=16, image_resolution=32, vision_layers=2, vision_width=64,
                                    vision_patch_size=16, context_length=8, vocab_size=64, transformer_width=32,
                                    transformer_heads=2, transformer_layers=1))
"""An AWRaCLe small enough for CPU tests: tiny backbone and a 2-layer, 64-channel CLIP ViT on 32 px (5 tokens)."""


def clip_preprocess(images, resolution):
    """CLIP's image preprocessing on tensors: shorter side to ``resolution`` (bicubic, antialiased, clamped
    to [0, 1] as an 8-bit image would be), centre crop ``resolution`` (torchvision's rounding), CLIP mean/std.

    Images already ``resolution`` x ``resolution`` are only normalised. The official code runs the same
    steps with Pillow on 8-bit images (``clip.load``'s ``preprocess``); the data pipeline of this package
    does that with Pillow before batching (``restorevar_plugin.data.transforms.clip_geometry``).

    Args:
        images (Tensor): ``(B, 3, h, w)`` in [0, 1], any h, w.
        resolution (int): CLIP's input side.

    Returns:
        Tensor: ``(B, 3, resolution, resolution)``, normalised.
    """
    height, width = images.shape[-2:]
    if (height, width) != (resolution, resolution):
        scale = resolution / min(height, width)
        size = (resolution, int(width * scale)) if height <= width else (int(height * scale), resolution)
        images = F.interpolate(images, size=size, mode='bicubic', align_corners=False, antialias=True).clamp(0, 1)
        top = int(round((images.shape[-2] - resolution) / 2.0))
        left = int(round((images.shape[-1] - resolution) / 2.0))
        images = images[..., top:top + resolution, left:left + resolution]
    mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


@ARCH_REGISTRY.register()
class AWRaCLe(PromptedRestormer):
    """AWRaCLe: PromptIR's backbone whose prompts come from a (degraded, clean) context pair through CLIP.

    The backbone is :class:`~restorevar_plugin.archs.layers.prompted_restormer.PromptedRestormer`
    without PromptIR's unused layers. ``prompt1..3`` are
    :class:`~restorevar_plugin.archs.layers.prompt_blocks.InContextBlock` (prompt channels 64, 128, 320
    with heads 2, 4, 8 = ``heads[1:]`` officially, 64 channels per head). The context tokens are the output
    of ``clip.visual.transformer.resblocks.<last>.ln_2`` (the LayerNorm inside the last visual block, as the
    official forward hook reads it): ``(tokens, 2B, vision_width)`` = (50, 2B, 768) for ViT-B/32, degraded
    contexts first.

    CLIP is frozen as officially: ``requires_grad`` False, and it stays in eval mode when the module is put
    in train mode (it has no dropout or batch norm, so this changes nothing numerically).

    Args:
        inp_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor,
            bias, layer_norm_type, decoder, prompt_dims: as :class:`~restorevar_plugin.archs.promptir_arch.PromptIR`.
        prompt_heads (list[int] | None): Heads of ``prompt1..3``; default ``heads[1:]``.
        prompt_dim_head (int): Channels per head of the in-context attentions. Default: 64.
        clip_config (dict | None): ``clip.model.CLIP`` arguments; default :data:`CLIP_VIT_B32`.

    Shapes: ``forward(lq, context_lq, context_gt)``: ``lq`` ``(B, 3, H, W)`` in [0, 1], any H, W; the context
    pair ``(B or 1, 3, h, w)`` in [0, 1], any h, w (CLIP preprocessing inside, :func:`clip_preprocess`) ->
    ``(B, 3, H, W)`` (not clamped). ``forward(lq, context_tokens=...)`` takes precomputed
    :meth:`encode_context` output instead of the images.
    """

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, layer_norm_type='WithBias', decoder=True,
                 prompt_dims=(64, 128, 320), prompt_heads=None, prompt_dim_head=64, clip_config=None):
        super().__init__(inp_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads,
                         ffn_expansion_factor, bias, layer_norm_type, decoder, prompt_dims)
        clip_config = dict(CLIP_VIT_B32 if clip_config is None else clip_config)
        context_dim = clip_config['vision_width']
        prompt_heads = list(heads[1:]) if prompt_heads is None else list(prompt_heads)
        if decoder:
            for index, (prompt_dim, lin_dim) in enumerate(zip(prompt_dims, (2 * dim, 4 * dim, 8 * dim)), start=1):
                setattr(self, f'prompt{index}',
                        InContextBlock(prompt_dim, lin_dim, context_dim, prompt_heads[index - 1], prompt_dim_head))
        self.clip = CLIP(**clip_config)
        self.clip.requires_grad_(False)
        self.clip.eval()
        self.feature_layer = f'visual.transformer.resblocks.{clip_config["vision_layers"] - 1}.ln_2'

    def train(self, mode=True):
        """Set train/eval mode of everything but CLIP, which stays in eval mode."""
        super().train(mode)
        self.clip.eval()
        return self

    @property
    def clip_resolution(self):
        """Side of CLIP's input images (224 for ViT-B/32)."""
        return self.clip.visual.input_resolution

    def encode_context(self, context_lq, context_gt):
        """CLIP tokens of a context pair, read at :attr:`feature_layer` (no gradient: CLIP is frozen).

        Args:
            context_lq (Tensor): Degraded contexts ``(N, 3, h, w)`` in [0, 1].
            context_gt (Tensor): Their clean versions, same shape.

        Returns:
            Tensor: ``(tokens, 2N, vision_width)``, LND, the N degraded contexts first.
        """
        if context_lq.shape != context_gt.shape:
            raise ValueError(f'AWRaCLe: context_lq {tuple(context_lq.shape)} and context_gt '
                             f'{tuple(context_gt.shape)} must have the same shape')
        images = clip_preprocess(torch.cat([context_lq, context_gt], 0), self.clip_resolution)
        captured = {}
        layer = self.clip.get_submodule(self.feature_layer)
        handle = layer.register_forward_hook(lambda module, inputs, output: captured.setdefault('tokens', output))
        try:
            with torch.no_grad():
                self.clip.encode_image(images.to(self.clip.visual.conv1.weight.dtype))
        finally:
            handle.remove()
        return captured['tokens']

    TINY_CONFIG = TINY_CONFIG

    def example_inputs(self, batch_size=2, generator=None):
        """``(lq, context_lq, context_gt)``: ``(batch_size, 3, 16, 16)`` and one ``(3, 40, 48)`` context pair per
        item, uniform in [0, 1]."""
        lq = torch.rand(batch_size, 3, 16, 16, generator=generator)
        context_lq, context_gt = (torch.rand(batch_size, 3, 40, 48, generator=generator) for _ in range(2))
        return lq, context_lq, context_gt

    def forward(self, lq, context_lq=None, context_gt=None, context_tokens=None):
        if context_tokens is None:
            if context_lq is None or context_gt is None:
                raise ValueError('AWRaCLe.forward needs a context pair (context_lq, context_gt) or context_tokens')
            context_tokens = self.encode_context(context_lq, context_gt)
        pairs = context_tokens.shape[1] // 2
        if pairs == 1 and lq.shape[0] > 1:
            degraded, clean = context_tokens.chunk(2, dim=1)
            context_tokens = torch.cat([degraded.expand(-1, lq.shape[0], -1), clean.expand(-1, lq.shape[0], -1)], 1)
        return self.restore(lq, context_tokens.to(lq.dtype))
