"""``InContextPairedDataset``: each item of a query dataset with an in-context (degraded, clean) pair (AWRaCLe).

Option file entry::

    datasets:
      train:
        name: aior5_in_context
        type: InContextPairedDataset
        query: {type: MultiDegradationPairedDataset, data_root: ..., meta: [...], transform: promptir}
        context:                 # the pool of context pairs; default: the query's own list (see below)
          type: MultiDegradationPairedDataset
          data_root: ...
          meta: [...]
        match: [degradation]     # item labels a context pair shares with its query (add `dataset` to
                                 # keep AWRaCLe's intensity splits, which its metas label as datasets)
        context_size: 224        # CLIP's input side: contexts get CLIP's geometry (clip_geometry)
        seed: 0
        batch_size_per_gpu: 8    # BasicSR's loader options stay at the top level

``query`` and ``context`` are dataset option blocks of any dataset of this package with ``item_labels``
(``MultiDegradationPairedDataset``, ``SyntheticDegradationDataset``). ``query`` gets this entry's
``name`` and ``phase``. The pool is built in the ``val`` phase (deterministic items; a paired dataset
reads it with ``transform: native`` and ``balance: none`` unless told otherwise) and defaults to the
query's options (a synthetic pool then keeps the query's split).

The context of an item is a pool pair with the same ``match`` labels and a different ``lq_path`` (a random
*other* sample, as AWRaCLe's training draws it). In training the choice is random (seeded per item as all
training randomness, :mod:`restorevar_plugin.data.item_randomness`); in validation and test it depends
only on ``(seed, index)``, so a test run is reproducible (the official test seeds numpy and torch but not
Python's ``random``, from which it draws the pair). Items are the query's dict plus ``context_lq`` and
``context_gt`` (``(3, context_size, context_size)`` float32 in [0, 1]), ``context_lq_path`` and
``context_gt_path``.
"""
import copy

from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from restorevar_plugin.data.item_randomness import item_rng
from restorevar_plugin.data.option_checks import dataset_label, reject_unknown_options
from restorevar_plugin.data.transforms import clip_geometry

OPTION_KEYS = ('query', 'context', 'match', 'context_size', 'seed')
POOL_PHASE = 'val'


def build_dataset(block, where, **injected):
    """A registered dataset from an option block ``{type: ..., ...}`` (a copy, with ``injected`` keys set)."""
    if not isinstance(block, dict) or 'type' not in block:
        raise ValueError(f'{where}: expected a dataset option block with a type; got {block!r}')
    opt = dict(copy.deepcopy(block), **injected)
    dataset = DATASET_REGISTRY.get(opt['type'])(opt)
    if not hasattr(dataset, 'item_labels'):
        raise ValueError(f'{where}: dataset type {opt["type"]} does not describe its items (no item_labels)')
    return dataset


def pool_options(query_block, query_phase):
    """The context pool's options when the ``context`` block is left out: the query's list, read whole."""
    block = copy.deepcopy(query_block)
    if block['type'] == 'MultiDegradationPairedDataset':
        for key in ('degradation_weights', 'epoch_length'):
            block.pop(key, None)
        block.update(transform='native', balance='none')
    elif block['type'] == 'SyntheticDegradationDataset' and not {'clean_folder', 'photos', 'split'} & set(block):
        block['split'] = 'train' if query_phase == 'train' else 'val'
    return block


@DATASET_REGISTRY.register()
class InContextPairedDataset(data.Dataset):
    """Query items with a context pair of the same degradation; see the module docstring for options.

    Args:
        opt (dict): Dataset options.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        where = dataset_label(opt, 'InContextPairedDataset')
        reject_unknown_options(opt, OPTION_KEYS, where)
        if 'query' not in opt:
            raise ValueError(f'{where}: option query (the dataset block of the images to restore) is required')
        self.phase = opt.get('phase', 'train')
        self.seed = int(opt.get('seed', 0))
        self.match = list(opt.get('match', ['degradation']))
        self.context_size = opt.get('context_size', 224)
        if not isinstance(self.context_size, int) or self.context_size <= 0:
            raise ValueError(f'{where}: context_size must be a positive integer; got {self.context_size!r}')
        self.query = build_dataset(opt['query'], f'{where}: query', phase=self.phase, name=opt.get('name', ''))
        pool_block = opt.get('context') or pool_options(opt['query'], self.phase)
        self.pool = build_dataset(pool_block, f'{where}: context', phase=POOL_PHASE,
                                  name=f'{opt.get("name", "")}_context')
        self.pool_labels = [self.pool.item_labels(index) for index in range(len(self.pool))]
        for key in self.match:
            if key not in self.pool_labels[0]:
                raise ValueError(f'{where}: match key {key!r} is not an item label; known: '
                                 f'{", ".join(self.pool_labels[0])}')
        self.groups = {}
        for index, labels in enumerate(self.pool_labels):
            self.groups.setdefault(self.group_key(labels), []).append(index)

    def group_key(self, labels):
        """The ``match`` labels of an item, as a tuple."""
        return tuple(labels[key] for key in self.match)

    def __len__(self):
        return len(self.query)

    def context_index(self, index, labels):
        """Pool index of the context pair of query item ``index`` with labels ``labels``.

        Raises:
            ValueError: No other pool pair has the query's ``match`` labels.
        """
        key = self.group_key(labels)
        candidates = [j for j in self.groups.get(key, []) if self.pool_labels[j]['lq_path'] != labels['lq_path']]
        if not candidates:
            raise ValueError(f'InContextPairedDataset: no context pair with {dict(zip(self.match, key))} other than '
                             f'{labels["lq_path"]} in the context pool ({len(self.pool)} pairs; groups: '
                             f'{sorted(self.groups)})')
        rng = item_rng(index, self.seed, self.phase)
        return candidates[int(rng.integers(len(candidates)))]

    def __getitem__(self, index):
        item = self.query[index]
        chosen = self.context_index(index, item)
        context = self.pool[chosen]
        for key in ('lq', 'gt'):
            image = context[key].permute(1, 2, 0).numpy()
            item[f'context_{key}'] = img2tensor(clip_geometry(image, self.context_size), bgr2rgb=False, float32=True)
            item[f'context_{key}_path'] = context[f'{key}_path']
        return item
