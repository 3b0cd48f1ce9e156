"""``ConcatenatedDataset``: several dataset entries, each repeated a number of times, as one training list.

PromptIR's training list is such a concatenation (``utils/dataset_utils.py``, ``PromptTrainDataset``):
its synthetic denoising images three times per sigma, Rain100L 120 times, then RESIDE OTS once::

    datasets:
      train:
        name: promptir_train
        type: ConcatenatedDataset
        parts:
          - {type: SyntheticDegradationDataset, clean_folder: ..., degradations: [noise15, noise25, noise50],
             repeat: 3}
          - {type: MultiDegradationPairedDataset, data_root: ..., meta: [promptir_rain100l_train], repeat: 120}
          - {type: MultiDegradationPairedDataset, data_root: ..., meta: [promptir_ots_train]}
        batch_size_per_gpu: 8

Every part gets this entry's ``name`` and ``phase``; item ``i`` of the whole is item ``i`` of the part
it falls in (after the parts before it, each ``len(part) * repeat`` long), modulo the part's length.
"""
import bisect
import copy

from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from restorevar_plugin.data.option_checks import dataset_label, reject_unknown_options


@DATASET_REGISTRY.register()
class ConcatenatedDataset(data.Dataset):
    """The items of ``parts`` (dataset option blocks with an optional ``repeat``), one after the other.

    Args:
        opt (dict): Dataset options (module docstring).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        where = dataset_label(opt, 'ConcatenatedDataset')
        reject_unknown_options(opt, ('parts', ), where)
        parts = opt.get('parts')
        if not isinstance(parts, list) or not parts:
            raise ValueError(f'{where}: parts must be a non-empty list of dataset option blocks')
        self.parts, self.ends = [], []
        total = 0
        for index, block in enumerate(parts):
            block = copy.deepcopy(block)
            repeat = block.pop('repeat', 1)
            if not isinstance(repeat, int) or repeat <= 0 or 'type' not in block:
                raise ValueError(f'{where}: parts[{index}] needs a type and a positive integer repeat; '
                                 f'got {parts[index]}')
            part = DATASET_REGISTRY.get(block['type'])(dict(block, phase=opt.get('phase', 'train'),
                                                               name=f'{opt.get("name", "")}[{index}]'))
            total += len(part) * repeat
            self.parts.append(part)
            self.ends.append(total)

    def __len__(self):
        return self.ends[-1]

    def locate(self, index):
        """``(part, index within the part)`` of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f'ConcatenatedDataset: index {index} out of range for {len(self)} items')
        which = bisect.bisect_right(self.ends, index)
        start = self.ends[which - 1] if which else 0
        part = self.parts[which]
        return part, (index - start) % len(part)

    def __getitem__(self, index):
        part, local = self.locate(index)
        return part[local]

    def item_labels(self, index):
        """The labels of item ``index`` from its part (see the parts' ``item_labels``)."""
        part, local = self.locate(index)
        return part.item_labels(local)
