"""Task-balanced sampling: each degradation type equally likely (or weighted), whatever the dataset sizes.

The official RestoreVAR sampler draws every epoch's indices with replacement, weighting each sample by
``1 / (number of samples with its degradation)``: each degradation is drawn with probability ``1/K``
and the samples inside a degradation uniformly (``DistWeightedInfiniteBatchSampler`` in the official
``utils/data_sampler.py``).

Design under BasicSR: BasicSR's train loop always wraps the train set in ``EnlargedSampler``, which
yields a per-epoch shuffled permutation of ``range(len(dataset))`` split across ranks. Rather than
replacing that sampler, the dataset draws: in the train phase, each ``__getitem__`` picks a degradation
by weight and then a pair uniformly inside it, with the item's own generator
(:func:`restorevar_plugin.data.item_randomness.item_rng`). The index sampler still decides how many
items an epoch has and how they are split over ranks; every item is an independent draw from the
official distribution, so the balance holds under ``EnlargedSampler``, ``DistributedSampler``, a plain
``RandomSampler`` or any other index sampler, and the draws differ across epochs, ranks and workers.
"""
import numpy as np


class BalancedDraw:
    """Draws sample indices so that each label (degradation) has a fixed probability.

    Args:
        labels (Sequence[str]): The label of every sample, e.g. each pair's degradation.
        weights (dict[str, float] | None): Relative weight per label; labels left out weigh 1, None means
            all equal (the official sampler). A weight of 0 removes a label.
        where (str): Option name used in error messages.
    """

    def __init__(self, labels, weights=None, where='degradation_weights'):
        if len(labels) == 0:
            raise ValueError(f'{where}: nothing to sample from (no samples)')
        labels = np.asarray(labels, dtype=object)
        self.groups = {label: np.flatnonzero(labels == label) for label in sorted(set(labels))}
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.groups))
        if unknown:
            raise ValueError(f'{where}: {", ".join(map(str, unknown))} not among the degradations present '
                             f'({", ".join(self.groups)})')
        bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0}
        if bad:
            raise ValueError(f'{where}: weights must be non-negative numbers; got {bad}')
        raw = np.array([float(weights.get(label, 1.0)) for label in self.groups])
        if raw.sum() <= 0:
            raise ValueError(f'{where}: at least one degradation needs a positive weight; got {weights}')
        self.probabilities = raw / raw.sum()
        self._members = list(self.groups.values())

    def shares(self):
        """``{label: probability}`` of drawing each label."""
        return {label: float(p) for label, p in zip(self.groups, self.probabilities)}

    def draw(self, rng):
        """One sample index: a label by probability, then a sample of that label uniformly.

        Args:
            rng (numpy.random.Generator): Source of randomness.

        Returns:
            int: Index into ``labels``.
        """
        members = self._members[rng.choice(len(self._members), p=self.probabilities)]
        return int(members[rng.integers(len(members))])
