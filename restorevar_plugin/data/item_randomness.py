"""One seeded numpy ``Generator`` per dataset item, so that data randomness is reproducible.

* ``val`` / ``test`` items are seeded by ``(seed, index)`` only: item ``i`` is the same every epoch.
* ``train`` items drawn through :class:`~restorevar_plugin.data.resumable_sampler.ResumableEnlargedSampler`
  (what ``basicsr train`` uses) are also seeded by the draw the index carries, ``(manual_seed, epoch, rank,
  position)``: items differ across epochs, ranks and positions, and do not depend on the number of
  DataLoader workers or on an interruption and resume.
* ``train`` items indexed by a plain ``int`` (another sampler) are seeded by a 63-bit value drawn from
  torch's global generator instead (reproducible for a fixed ``manual_seed``, not across a resume).
"""
import numpy as np
import torch

PHASES = ('train', 'val', 'test')


def item_rng(index, seed, phase):
    """The generator for dataset item ``index``.

    Args:
        index (int | DrawIndex): Dataset index (a ``DrawIndex`` carries its draw).
        seed (int): The dataset's ``seed`` option.
        phase (str): ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        numpy.random.Generator
    """
    if phase not in PHASES:
        raise ValueError(f'phase must be one of {", ".join(PHASES)}; got {phase!r}')
    entropy = [int(seed), int(index)]
    if phase == 'train':
        draw = getattr(index, 'draw', None)
        entropy.extend(draw if draw is not None else [int(torch.randint(0, 2**63 - 1, (1,)).item())])
    return np.random.default_rng(entropy)
