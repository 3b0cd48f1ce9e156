"""Checks shared by the plugin's datasets on their BasicSR option dicts."""

BASICSR_DATASET_KEYS = ('name', 'type', 'phase', 'scale', 'io_backend', 'num_worker_per_gpu', 'batch_size_per_gpu',
                        'dataset_enlarge_ratio', 'prefetch_mode', 'num_prefetch_queue', 'pin_memory',
                        'persistent_workers', 'use_shuffle')


def dataset_label(opt, default_type):
    """``'dataset <name> (<type>)'``: how error messages name a dataset entry."""
    return f'dataset {opt.get("name", "<unnamed>")} ({opt.get("type", default_type)})'


def reject_unknown_options(opt, own_keys, where):
    """Raise ValueError naming any key of ``opt`` that is neither in ``own_keys`` nor a BasicSR loader key."""
    unknown = sorted(set(opt) - set(own_keys) - set(BASICSR_DATASET_KEYS))
    if unknown:
        raise ValueError(f'{where}: unknown option(s) {", ".join(unknown)}; options: {", ".join(own_keys)}')
