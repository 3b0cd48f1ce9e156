"""Training lengths in epochs: option keys counted in epochs, turned into BasicSR's iteration keys at startup.

BasicSR counts everything in iterations (``train.total_iter`` ...), but recipes such as RestoreVAR's are
given in epochs of a training list whose size is only known once the dataset is built (the official
``train.sh``: 50 epochs of ``ceil(N / 48)`` iterations, ``N`` the length of ``trainset.json``). These keys
may replace their iteration counterparts in an option file:

=========================================== ========================================
epochs                                      becomes
=========================================== ========================================
``train.total_epochs`` (positive integer)   ``train.total_iter``, and the schedule length
                                            (``train.scheduler.total_iter`` of ``ConstantLinearDecayLR``,
                                            ``max_iter`` of ``LinearWarmupCosineLR``) when not given
``train.scheduler.warmup_epochs``           ``train.scheduler.warmup_iter``
``val.val_freq_epochs``                     ``val.val_freq``
``logger.save_checkpoint_freq_epochs``      ``logger.save_checkpoint_freq``
=========================================== ========================================

One epoch is BasicSR's own count, ``ceil(len(train set) * dataset_enlarge_ratio / (batch_size_per_gpu *
world_size))`` iterations, i.e. ``ceil(N / global batch)``. :func:`check_epoch_options` validates the keys
when the options are parsed (before anything is written); :func:`apply_epoch_schedule` converts them right
after the train set is built (before the model and its schedulers), and the conversion is logged. Under
``--debug`` (``debug`` in the name) BasicSR's short debug frequencies win over the ``*_freq_epochs`` keys.
"""
import math

TOTAL_EPOCHS = ('train', 'total_epochs', 'total_iter')
FREQUENCIES = (('train.scheduler', 'warmup_epochs', 'warmup_iter'), ('val', 'val_freq_epochs', 'val_freq'),
               ('logger', 'save_checkpoint_freq_epochs', 'save_checkpoint_freq'))
SCHEDULE_LENGTH_KEYS = {'ConstantLinearDecayLR': 'total_iter', 'LinearWarmupCosineLR': 'max_iter'}


class EpochOptionError(ValueError):
    """An epoch-counted option is malformed or given together with its iteration counterpart."""


def _section(opt, dotted):
    section = opt
    for key in dotted.split('.'):
        section = section.get(key) if isinstance(section, dict) else None
    return section if isinstance(section, dict) else None


def _is_number(value, minimum):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum


def _epoch_keys(opt):
    """``[(section dict, dotted section name, epoch key, iteration key)]`` of the epoch keys ``opt`` uses."""
    found = []
    for dotted, epoch_key, iter_key in ((TOTAL_EPOCHS[0], TOTAL_EPOCHS[1], TOTAL_EPOCHS[2]), *FREQUENCIES):
        section = _section(opt, dotted)
        if section is not None and epoch_key in section:
            found.append((section, dotted, epoch_key, iter_key))
    return found


def check_epoch_options(opt):
    """Validate the epoch keys of parsed options (see the module docstring); no change to ``opt``.

    Raises:
        EpochOptionError: Bad value, an epoch key together with its iteration key, a ``*_epochs`` key without
            ``train.total_epochs``' train set, or a schedule length given next to ``train.total_epochs``.
    """
    used = _epoch_keys(opt)
    if not used:
        return
    if 'train' not in (opt.get('datasets') or {}):
        raise EpochOptionError(f'{used[0][1]}.{used[0][2]}: epochs need a datasets.train entry to count them')
    for section, dotted, epoch_key, iter_key in used:
        value = section[epoch_key]
        if epoch_key == TOTAL_EPOCHS[1]:
            if not (isinstance(value, int) and _is_number(value, 1)):
                raise EpochOptionError(f'train.total_epochs must be a positive integer; got {value!r}')
        elif not _is_number(value, 0):
            raise EpochOptionError(f'{dotted}.{epoch_key} must be a non-negative number of epochs; got {value!r}')
        if iter_key in section and not (iter_key.endswith('_freq') and 'debug' in opt.get('name', '')):
            raise EpochOptionError(f'{dotted}: give either {epoch_key} or {iter_key}, not both')
    train_opt = opt.get('train') or {}
    scheduler = train_opt.get('scheduler') or {}
    length_key = SCHEDULE_LENGTH_KEYS.get(scheduler.get('type'))
    if 'total_epochs' in train_opt and length_key in scheduler:
        raise EpochOptionError(f'train.scheduler.{length_key} is set with train.total_epochs; leave it out (it '
                               'becomes train.total_iter)')


def iterations_per_epoch(num_items, enlarge_ratio, batch_size_per_gpu, world_size):
    """BasicSR's iterations per epoch: ``ceil(num_items * enlarge_ratio / (batch_size_per_gpu * world_size))``."""
    return math.ceil(num_items * enlarge_ratio / (batch_size_per_gpu * world_size))


def apply_epoch_schedule(opt, num_items):
    """Replace the epoch keys of ``opt`` (in place) by iterations, given the train set's length.

    Args:
        opt (dict): Parsed options with ``datasets.train`` (``batch_size_per_gpu``, ``dataset_enlarge_ratio``)
            and ``world_size``; validated by :func:`check_epoch_options`.
        num_items (int): ``len(train set)``.

    Returns:
        list[str]: One line per conversion, for the log (empty when no epoch key is used).
    """
    used = _epoch_keys(opt)
    if not used:
        return []
    dataset_opt = opt['datasets']['train']
    enlarge, batch, world = (dataset_opt.get('dataset_enlarge_ratio', 1), dataset_opt['batch_size_per_gpu'],
                             opt.get('world_size', 1))
    per_epoch = iterations_per_epoch(num_items, enlarge, batch, world)
    lines = [f'Epochs to iterations: {num_items} items x enlarge ratio {enlarge} / (batch {batch} per GPU x '
             f'{world} processes) -> {per_epoch} iterations per epoch']
    debug = 'debug' in opt.get('name', '')
    for section, dotted, epoch_key, iter_key in used:
        epochs = section.pop(epoch_key)
        if debug and iter_key.endswith('_freq') and iter_key in section:
            lines.append(f'\t{dotted}.{epoch_key}: {epochs} ignored in debug mode ({iter_key} {section[iter_key]})')
            continue
        section[iter_key] = max(round(epochs * per_epoch), 0 if iter_key == 'warmup_iter' else 1)
        lines.append(f'\t{dotted}.{epoch_key}: {epochs} -> {dotted}.{iter_key}: {section[iter_key]}')
        if epoch_key == TOTAL_EPOCHS[1]:
            scheduler = opt['train'].get('scheduler') or {}
            length_key = SCHEDULE_LENGTH_KEYS.get(scheduler.get('type'))
            if length_key is not None:
                scheduler[length_key] = section[iter_key]
                lines.append(f'\ttrain.scheduler.{length_key}: {section[iter_key]}')
    return lines
