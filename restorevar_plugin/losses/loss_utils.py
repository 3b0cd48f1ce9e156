"""Helpers shared by our losses: the ``input_range`` and ``reduction`` options, input checks, value-range maps."""
from numbers import Real

REDUCTIONS = ('none', 'mean', 'sum')


def check_reduction(reduction, owner):
    """Raise ``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS` (BasicSR's loss convention)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f'{owner}: reduction must be one of {REDUCTIONS}, got {reduction!r}')


def parse_input_range(input_range, owner):
    """Validate an ``input_range`` option, e.g. ``(0, 1)`` or ``[-1, 1]`` from YAML.

    Args:
        input_range (Sequence[float]): ``(low, high)`` of the tensors the caller will pass.
        owner (str): Name used in the error message (the class reading the option).

    Returns:
        tuple[float, float]: ``(low, high)`` with ``low < high``.

    Raises:
        ValueError: not two real numbers with ``low < high``.
    """
    values = tuple(input_range) if isinstance(input_range, (list, tuple)) else (input_range,)
    if len(values) != 2 or not all(isinstance(v, Real) for v in values) or not values[0] < values[1]:
        raise ValueError(f'{owner}: input_range must be two numbers (low, high) with low < high, e.g. (0, 1) or '
                         f'(-1, 1); got {input_range!r}')
    return float(values[0]), float(values[1])


def rescale(tensor, source_range, target_range):
    """Map ``tensor`` linearly from ``source_range`` to ``target_range`` (returned as is when they are equal)."""
    if source_range == target_range:
        return tensor
    (source_low, source_high), (target_low, target_high) = source_range, target_range
    scale = (target_high - target_low) / (source_high - source_low)
    return (tensor - source_low) * scale + target_low


def check_image_pair(pred, target, owner, min_size=1):
    """Raise ``ValueError`` unless ``pred``, ``target`` are ``(B, C, H, W)`` of one shape, sides >= ``min_size``."""
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(f'{owner}: pred and target must be (B, C, H, W) tensors of the same shape; got '
                         f'{tuple(pred.shape)} and {tuple(target.shape)}')
    if min(pred.shape[-2:]) < min_size:
        raise ValueError(f'{owner}: images must be at least {min_size}x{min_size}; got {tuple(pred.shape[-2:])}')
