"""``AWRaCLeModel``: :class:`RestorationModel` for networks restoring a query from an in-context pair.

The network is called as ``net_g(lq, context_lq, context_gt)`` (or with ``context_tokens``, see
:class:`~restorevar_plugin.archs.awracle_arch.AWRaCLe`). Context pairs come with the data
(:class:`~restorevar_plugin.data.in_context_dataset.InContextPairedDataset`: same degradation as the
query, random in training, seeded at test time), or, at test time, one fixed pair named in YAML::

    path:
      pretrain_network_g: pretrained/best.ckpt      # AWRaCLe's checkpoint holds CLIP's weights (net.clip.*)
      pretrain_network_clip: ~                       # or CLIP alone, e.g. OpenAI's ViT-B-32.pt, for training
    val:
      context: {lq: ctx/rain_input.png, gt: ctx/rain_target.png}   # optional fixed pair (relative to the root)
      cache_context_features: true                  # reuse CLIP tokens of pairs already seen (test only)

The fixed pair serves batches that carry no pair of their own (a plain test dataset such as
``MultiDegradationPairedDataset``); it gets CLIP's geometry with Pillow as the dataset does
(:func:`~restorevar_plugin.data.transforms.clip_geometry`). Training batches must carry their pairs.
"""
from pathlib import Path

import torch
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import MODEL_REGISTRY

from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.data.transforms import clip_geometry
from restorevar_plugin.models.restoration_model import RestorationModel


@MODEL_REGISTRY.register()
class AWRaCLeModel(RestorationModel):
    """In-context restoration: ``net_g(lq, context_lq, context_gt)``, images ``(B, 3, H, W)`` in [0, 1].

    ``feed_data`` reads ``context_lq`` / ``context_gt`` (``(B, 3, h, w)`` in [0, 1], any size) and, when
    present, ``context_lq_path`` / ``context_gt_path`` (used as the cache key of CLIP's tokens).
    """

    requires_context = True
    # Option keys read here, for restorevar_plugin.option_schema.
    option_schema = {'path': {'pretrain_network_clip': 'str'},
                     'val': {'context': 'any', 'cache_context_features': 'bool'}}

    def __init__(self, opt):
        super().__init__(opt)
        clip_path = opt['path'].get('pretrain_network_clip')
        networks = [self.net_g] + ([self.net_ema] if hasattr(self, 'net_ema') else [])
        if clip_path:
            for net in networks:
                self.load_network(self.get_bare_model(net).clip, clip_path, opt['path'].get('strict_load_clip', True))
        elif not opt['path'].get('pretrain_network_g'):
            get_root_logger().warning('AWRaCLeModel: neither path.pretrain_network_g nor path.pretrain_network_clip '
                                      'is set: the CLIP context encoder keeps its random initialisation.')
        val_opt = opt.get('val') or {}
        self.fixed_context = self._read_fixed_context(val_opt.get('context'))
        self.cache_context = bool(val_opt.get('cache_context_features', False))
        self.context_cache = {}

    def _read_fixed_context(self, spec):
        if not spec:
            return None
        if not isinstance(spec, dict) or set(spec) != {'lq', 'gt'}:
            raise ValueError(f'val.context must be a mapping {{lq: path, gt: path}}; got {spec!r}')
        root = Path(self.opt.get('root_path') or '.')
        paths = {key: Path(spec[key]).expanduser() for key in ('lq', 'gt')}
        paths = {key: path if path.is_absolute() else root / path for key, path in paths.items()}
        lq, gt = self.read_context_pair(paths['lq'], paths['gt'])
        return {'lq': lq, 'gt': gt, 'lq_path': spec['lq'], 'gt_path': spec['gt']}

    def read_context_pair(self, lq_path, gt_path):
        """A context pair read from two image files (any sizes) in CLIP's geometry, as the in-context dataset
        prepares it (:func:`~restorevar_plugin.data.transforms.clip_geometry`).

        Returns:
            tuple[Tensor, Tensor]: ``context_lq``, ``context_gt`` ``(1, 3, S, S)`` in [0, 1] on the model's device,
            ``S`` CLIP's input side.

        Raises:
            ImageReadError: A file cannot be read as an image (named).
        """
        reader = ImageReader()
        size = self.get_bare_model(self.net_g).clip_resolution
        return tuple(img2tensor(clip_geometry(reader.read(str(path)), size), bgr2rgb=False, float32=True)[None]
                     .to(self.device) for path in (lq_path, gt_path))

    def feed_data(self, data):
        """Query images as :class:`RestorationModel`, plus the batch's context pairs (else ``val.context``)."""
        super().feed_data(data)
        if 'context_lq' in data:
            self.context_lq = data['context_lq'].to(self.device)
            self.context_gt = data['context_gt'].to(self.device)
            paths = (data.get('context_lq_path'), data.get('context_gt_path'))
            self.context_paths = list(zip(*paths)) if None not in paths else None
        elif self.fixed_context is not None:
            self.context_lq, self.context_gt = self.fixed_context['lq'], self.fixed_context['gt']
            self.context_paths = [(self.fixed_context['lq_path'], self.fixed_context['gt_path'])]
        else:
            raise ValueError('AWRaCLeModel: the batch holds no context pair (context_lq, context_gt): use an '
                             'InContextPairedDataset, or val.context for a fixed pair at test time')

    def net_inputs(self, net, lq):
        """``(lq, context_lq, context_gt)``; with ``val.cache_context_features`` outside training, the cached
        CLIP tokens of each context pair (known by its file paths) instead of the images."""
        if not self.cache_context or net.training or self.context_paths is None:
            return lq, self.context_lq, self.context_gt
        bare = self.get_bare_model(net)
        tokens = []
        for index, paths in enumerate(self.context_paths):
            if paths not in self.context_cache:
                self.context_cache[paths] = bare.encode_context(self.context_lq[index:index + 1],
                                                                self.context_gt[index:index + 1])
            tokens.append(self.context_cache[paths])
        degraded = torch.cat([pair[:, :1] for pair in tokens], dim=1)
        clean = torch.cat([pair[:, 1:] for pair in tokens], dim=1)
        return lq, None, None, torch.cat([degraded, clean], dim=1)
