"""A train-set sampler that resumes mid-epoch and names every draw, so that a resumed run sees the same data.

BasicSR's train loop restarts the current epoch's iterator from its first index on resume, and the random
augmentations of an item come from generators whose state depends on what the process (or a DataLoader
worker) did before. :class:`ResumableEnlargedSampler` fixes both at the source:

* it yields the same per-epoch permutation as BasicSR's ``EnlargedSampler`` (seeded by the epoch, split over
  ranks), and :meth:`~ResumableEnlargedSampler.skip_batches` makes the next epoch iteration start after the
  batches a resumed run already trained on;
* every index it yields is a :class:`DrawIndex`: an ``int`` (BasicSR's datasets use it as one) carrying
  ``draw = (manual_seed, epoch, rank, position)``. :func:`restorevar_plugin.data.item_randomness.item_rng`
  seeds a train item's generator with it, so an item's crop and degradation depend only on where it is
  drawn, not on the process's generator state, the number of workers or an interruption.
"""
from basicsr.data.data_sampler import EnlargedSampler


class DrawIndex(int):
    """A dataset index that also names the draw it comes from.

    Args:
        index (int): The dataset index.
        draw (tuple[int, ...]): ``(manual_seed, epoch, rank, position in the epoch)``.
    """

    def __new__(cls, index, draw):
        value = super().__new__(cls, index)
        value.draw = tuple(int(part) for part in draw)
        return value

    def __reduce__(self):
        return DrawIndex, (int(self), self.draw)


class ResumableEnlargedSampler(EnlargedSampler):
    """BasicSR's ``EnlargedSampler`` (same indices, same order) yielding :class:`DrawIndex` values, resumable.

    Args:
        dataset (Dataset): The train set.
        num_replicas (int): World size.
        rank (int): This process's rank.
        ratio (int): ``dataset_enlarge_ratio``.
        seed (int): The run's ``manual_seed`` (part of every draw).
    """

    def __init__(self, dataset, num_replicas, rank, ratio=1, seed=0):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.seed = int(seed)
        self.skip = 0

    def skip_batches(self, batches, batch_size):
        """Make the next iteration start after ``batches`` batches of ``batch_size`` indices (once).

        Raises:
            ValueError: ``batches`` is negative or more than an epoch holds.
        """
        per_epoch = self.num_samples // batch_size
        if not 0 <= batches <= per_epoch:
            raise ValueError(f'cannot resume {batches} batches into an epoch of {per_epoch} batches of {batch_size}: '
                             'the train set, batch size or world size changed since the state was saved')
        self.skip = batches * batch_size

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter([DrawIndex(index, (self.seed, self.epoch, self.rank, position))
                     for position, index in enumerate(indices) if position >= skip])
