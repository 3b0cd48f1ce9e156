"""One seeded numpy ``Generator`` per dataset item, so that data randomness is reproducible.

* ``val`` / ``test`` items are seeded by ``(seed, index)`` only: item ``i`` is the same every epoch.
* ``train`` items are also seeded by a 63-bit value drawn from torch's global generator. BasicSR seeds
  that generator with ``manual_seed + rank``, and a DataLoader re-seeds it in every worker at every
  epoch (``base_seed + worker_id``, with ``base_seed`` drawn from the main process), so training items
  differ across epochs, ranks and workers while a run with a fixed ``manual_seed`` is reproducible.
"""
import numpy as np
import torch

PHASES = ('train', 'val', 'test')


def item_rng(index, seed, phase):
    """The generator for dataset item ``index``.

    Args:
        index (int): Dataset index.
        seed (int): The dataset's ``seed`` option.
        phase (str): ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        numpy.random.Generator
    """
    if phase not in PHASES:
        raise ValueError(f'phase must be one of {", ".join(PHASES)}; got {phase!r}')
    entropy = [int(seed), int(index)]
    if phase == 'train':
        entropy.append(int(torch.randint(0, 2**63 - 1, (1,)).item()))
    return np.random.default_rng(entropy)
