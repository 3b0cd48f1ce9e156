"""``MultiDegradationPairedDataset``: paired LQ/GT images of several datasets and degradations.

Option file entry (BasicSR dataset options)::

    datasets:
      train:
        name: aio5
        type: MultiDegradationPairedDataset
        data_root: /data/restorevar         # relative paths resolve against the current directory
        meta: [restorevar_reside_train, restorevar_snow100k_train, restorevar_rain13k_train,
               restorevar_lolv1_train, restorevar_gopro_train]   # names, meta file paths or inline mappings
        fallback_meta: [...]                # optional: used instead when a meta's files are missing (see below)
        meta_dirs: [my_metas]               # optional extra folders searched first for meta names
        transform: {type: restorevar, crop_size: 512}   # or a name; see restorevar_plugin.data.transforms
        balance: degradation                # 'degradation' (default for train) or 'none' (default otherwise)
        degradation_weights: {haze: 2}      # optional, relative; unlisted degradations weigh 1
        epoch_length: 10000                 # optional items per epoch with balance (default: number of pairs)
        seed: 0                             # randomness of val/test items (train: also torch's generator)
        allow_size_mismatch: true           # default with paper_512 (LQ and GT resized independently); else false
        max_items: 5001                     # optional: only the first N pairs (metas in order, each in file order)

Defaults: ``transform`` is ``restorevar`` in the train phase and ``paper_512`` otherwise;
``allow_size_mismatch`` is true with ``paper_512`` (LQ and GT of different sizes are each resized to the
fixed size, as the official RestoreVAR test does) and must stay false with the cropping transforms. Every pair
is checked when the dataset is built (a broken pair raises, naming the files); ``basicsr check-data``
reports the same without raising. Task balance: see :mod:`restorevar_plugin.data.balanced_sampling`.

``fallback_meta`` (same forms as ``meta``) replaces ``meta`` when one of its folders or list files does not
exist (e.g. RestoreVAR's own training list ``trainset.json``, which comes only with the data archive: train
on it when present, on the scanned training folders otherwise); the switch is logged. Broken pairs in an
existing list still raise.

``max_items`` keeps the first N pairs of the entry, as the official RestoreVAR test (``infer.py``) stops
after 5001 images of each test list; the pairs after them are never read (their pairing is still checked).
"""
from dataclasses import dataclass, field
from typing import Optional

from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from restorevar_plugin.data.balanced_sampling import BalancedDraw
from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.data.item_randomness import item_rng
from restorevar_plugin.data.meta import DatasetLayoutError, find_pairs, resolve_metas
from restorevar_plugin.data.option_checks import dataset_label, reject_unknown_options
from restorevar_plugin.data.transforms import build_transform

OPTION_KEYS = ('data_root', 'meta', 'fallback_meta', 'meta_dirs', 'transform', 'balance', 'degradation_weights',
               'epoch_length', 'seed', 'allow_size_mismatch', 'max_items')
BALANCE_MODES = ('degradation', 'none')


@dataclass
class PairedDatasetSettings:
    """The validated options of one ``MultiDegradationPairedDataset`` entry (see the module docstring)."""
    name: str
    phase: str
    data_root: str
    metas: list
    transform: object
    balance: str
    degradation_weights: Optional[dict]
    epoch_length: Optional[int]
    seed: int
    allow_size_mismatch: bool
    max_items: Optional[int] = None
    fallback_metas: list = field(default_factory=list)


def paired_dataset_settings(opt):
    """Validate a ``MultiDegradationPairedDataset`` option dict; load its metas and build its transform.

    Args:
        opt (dict): The dataset options (BasicSR injects ``phase``; the default phase here is ``train``).

    Returns:
        PairedDatasetSettings

    Raises:
        ValueError: Unknown or missing option, bad value (message names the dataset and the option).
        MetaSchemaError: A meta cannot be found or is invalid.
    """
    where = dataset_label(opt, 'MultiDegradationPairedDataset')
    reject_unknown_options(opt, OPTION_KEYS, where)
    for key in ('data_root', 'meta'):
        if not opt.get(key):
            raise ValueError(f'{where}: option {key!r} is required')
    phase = opt.get('phase', 'train')
    backend = (opt.get('io_backend') or {'type': 'disk'}).get('type')
    if backend != 'disk':
        raise ValueError(f'{where}: io_backend.type must be disk (got {backend!r}); LMDB data is described by a '
                         'meta with pairing rule lmdb')
    balance = opt.get('balance', 'degradation' if phase == 'train' else 'none')
    if balance not in BALANCE_MODES:
        raise ValueError(f'{where}: balance must be one of {", ".join(BALANCE_MODES)}; got {balance!r}')
    weights = opt.get('degradation_weights')
    if weights is not None and (balance != 'degradation' or not isinstance(weights, dict)):
        raise ValueError(f'{where}: degradation_weights must be a mapping {{degradation: weight}} and needs '
                         'balance: degradation')
    epoch_length = opt.get('epoch_length')
    if epoch_length is not None and (not isinstance(epoch_length, int) or epoch_length <= 0):
        raise ValueError(f'{where}: epoch_length must be a positive integer; got {epoch_length!r}')
    if epoch_length is not None and balance != 'degradation':
        raise ValueError(f'{where}: epoch_length needs balance: degradation (without it, items map to pairs one to '
                         'one; use dataset_enlarge_ratio to repeat them)')
    transform = build_transform(opt.get('transform', 'restorevar' if phase == 'train' else 'paper_512'),
                                f'{where}: transform')
    allow_mismatch = opt.get('allow_size_mismatch', transform.accepts_size_mismatch)
    if allow_mismatch and not transform.accepts_size_mismatch:
        raise ValueError(f'{where}: allow_size_mismatch needs a transform that resizes both images to a fixed '
                         f'size (paper_512), not {transform.name}')
    max_items = opt.get('max_items')
    if max_items is not None and (not isinstance(max_items, int) or isinstance(max_items, bool) or max_items <= 0):
        raise ValueError(f'{where}: max_items must be a positive integer (the number of pairs kept); '
                         f'got {max_items!r}')
    metas = resolve_metas(opt['meta'], opt.get('meta_dirs'), f'{where}: meta')
    fallback = resolve_metas(opt['fallback_meta'], opt.get('meta_dirs'), f'{where}: fallback_meta') \
        if opt.get('fallback_meta') else []
    return PairedDatasetSettings(opt.get('name', ''), phase, str(opt['data_root']), metas, transform, balance,
                                 weights, epoch_length, int(opt.get('seed', 0)), bool(allow_mismatch), max_items,
                                 fallback)


@DATASET_REGISTRY.register()
class MultiDegradationPairedDataset(data.Dataset):
    """Paired (or no-reference) images from ``datasets_meta`` entries, task-balanced in training.

    Each item is BasicSR's dict: ``lq`` and ``gt`` as ``(3, H, W)`` float32 RGB tensors in [0, 1],
    ``lq_path``, ``gt_path``, plus ``degradation`` (canonical name) and ``dataset`` (label). No-reference
    datasets have no ``gt``/``gt_path``; one dataset entry cannot mix the two kinds.

    Args:
        opt (dict): Dataset options (module docstring).
    """

    option_keys = OPTION_KEYS  # for restorevar_plugin.option_schema

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.settings = paired_dataset_settings(opt)
        self.metas = self.settings.metas
        try:
            self.pairs = self._find_pairs(self.metas)
        except DatasetLayoutError as error:
            if not self.settings.fallback_metas:
                raise
            self.metas = self.settings.fallback_metas
            get_root_logger().warning(f'dataset {self.settings.name}: {error}. Using fallback_meta '
                                      f'{", ".join(meta.name for meta in self.metas)} instead.')
            self.pairs = self._find_pairs(self.metas)
        self.pairs = self.pairs[:self.settings.max_items]
        with_gt = {meta.has_reference for meta in self.metas}
        if len(with_gt) > 1:
            raise ValueError(f'dataset {self.settings.name}: mixes paired and no-reference metas; put them in '
                             'separate dataset entries')
        self.has_gt = with_gt.pop()
        if self.settings.phase == 'train' and not self.has_gt:
            raise ValueError(f'dataset {self.settings.name}: training needs GT, but its metas are no-reference')
        self.balanced = None
        if self.settings.balance == 'degradation':
            self.balanced = BalancedDraw([pair.degradation for pair in self.pairs], self.settings.degradation_weights,
                                         f'dataset {self.settings.name}: degradation_weights')
        self.reader = ImageReader()

    def _find_pairs(self, metas):
        return [pair for meta in metas for pair in find_pairs(meta, self.settings.data_root)]

    def __len__(self):
        return self.settings.epoch_length or len(self.pairs)

    def item_labels(self, index):
        """Item ``index``'s ``lq_path``, ``gt_path``, ``degradation`` and ``dataset`` without reading its images.

        Raises:
            ValueError: With ``balance: degradation`` (items are then drawn at random, not indexed).
        """
        if self.balanced is not None:
            raise ValueError(f'dataset {self.settings.name}: with balance: degradation an item is a random draw; '
                             'item labels need balance: none')
        pair = self.pairs[index % len(self.pairs)]
        return {'lq_path': pair.lq_path, 'gt_path': pair.gt_path, 'degradation': pair.degradation,
                'dataset': pair.dataset}

    def _read_pair(self, pair):
        lq = self.reader.read(pair.lq_path)
        gt = self.reader.read(pair.gt_path) if pair.gt_path is not None else None
        if gt is not None and lq.shape != gt.shape and not self.settings.allow_size_mismatch:
            transform = self.settings.transform
            if transform.accepts_size_mismatch:
                reason = 'allow_size_mismatch: false forbids resizing them independently'
            else:
                reason = f'transform {transform.name} needs equal sizes (only paper_512 resizes each image on its own)'
            raise ValueError(f'size mismatch in dataset {self.settings.name}: LQ {pair.lq_path} is '
                             f'{lq.shape[0]}x{lq.shape[1]} but GT {pair.gt_path} is {gt.shape[0]}x{gt.shape[1]}; '
                             f'{reason}. Fix the pair or the option.')
        return lq, gt

    def __getitem__(self, index):
        rng = item_rng(index, self.settings.seed, self.settings.phase)
        pair = self.pairs[self.balanced.draw(rng) if self.balanced is not None else index % len(self.pairs)]
        lq, gt = self.settings.transform(*self._read_pair(pair), rng)
        sample = {'lq': img2tensor(lq, bgr2rgb=False, float32=True), 'lq_path': pair.lq_path,
                  'degradation': pair.degradation, 'dataset': pair.dataset}
        if gt is not None:
            sample['gt'] = img2tensor(gt, bgr2rgb=False, float32=True)
            sample['gt_path'] = pair.gt_path
        return sample
