"""The option-file schema as data, and the check that reports every problem of a file at once.

:func:`check_options` walks an option dict (as read from YAML, after ``--force_yml``) and returns one line per
problem, each starting with the option's YAML path: an unknown key with the closest valid one, a value of the
wrong kind (``train.optim_g.lr: expected a number, got 'abc'``), a ``type`` no registry holds, or a constructor
argument the class does not take (``network_g.dept: unknown argument of RestoreVARTransformer; did you mean depth?``).

Where the accepted keys come from:

* BasicSR's own keys (top level, ``datasets.*``, ``path``, ``train``, ``val``, ``logger``, ``dist_params``):
  the tables below, from ``basicsr/utils/options.py``, ``train.py``, ``models/*.py`` and ``data/*.py``;
* ``network_<x>``, ``train.<loss>_opt``, ``train.scheduler``, ``train.optim_<x>``, ``val.metrics.<label>``
  (after :func:`restorevar_plugin.evaluation.resolve_metrics` has checked ``val.protocol`` and ``val.metrics``):
  the registered class's (or function's) constructor signature (``inspect.signature``; a ``**kwargs`` parameter
  accepts anything), the kind of each value inferred from the parameter's default;
* a model class's ``option_schema`` attribute (``{'train': {...}, 'val': {...}, 'path': {...}, '': {top-level}}``,
  merged over its bases): plugins declare what their models read the same way this package does;
* the harness's epoch-counted keys (:mod:`restorevar_plugin.epoch_schedule`: ``train.total_epochs`` ...);
* a dataset class's ``option_keys`` attribute (dataset-specific keys; BasicSR's loader keys are always allowed).
  Datasets of other packages that declare nothing are not checked beyond the loader keys' kinds.

Kinds: ``'str'``, ``'int'``, ``'number'`` (also a string ``float()`` reads, such as ``1e-4``), ``'bool'``,
``'list'``, ``'dict'``, ``'int_or_auto'``, ``'str_or_list'``, ``'any'``; ``None`` (``~``) is always accepted.
"""
import difflib
import inspect

import torch

from restorevar_plugin.epoch_schedule import FREQUENCIES, TOTAL_EPOCHS
from restorevar_plugin.evaluation import resolve_metrics
from restorevar_plugin.models.lr_schedulers import SCHEDULERS
from restorevar_plugin.models.plugin_base_model import BASICSR_SCHEDULERS
from restorevar_plugin.registry_utils import (
    REGISTRIES,
    UnknownRegistryNameError,
    require_registered,
)

TOP_LEVEL = {
    'name': 'str', 'model_type': 'str', 'scale': 'int', 'num_gpu': 'int_or_auto', 'manual_seed': 'int',
    'datasets': 'dict', 'path': 'dict', 'train': 'dict', 'val': 'dict', 'logger': 'dict', 'dist_params': 'dict',
    'find_unused_parameters': 'bool',
    'analysis': 'dict',  # basicsr analyze-scales
}
# RealESRGAN's on-the-fly degradation (basicsr/models/realesrgan_model.py) reads these at the top level.
REALESRGAN_TOP_LEVEL = {key: 'any' for key in (
    'high_order_degradation', 'gt_usm', 'gan_gt_usm', 'l1_gt_usm', 'percep_gt_usm', 'queue_size', 'gt_size',
    'resize_prob', 'resize_range', 'gaussian_noise_prob', 'noise_range', 'poisson_scale_range', 'gray_noise_prob',
    'jpeg_range', 'second_blur_prob', 'resize_prob2', 'resize_range2', 'gaussian_noise_prob2', 'noise_range2',
    'poisson_scale_range2', 'gray_noise_prob2', 'jpeg_range2')}
MODEL_TOP_LEVEL = {'RealESRGANModel': REALESRGAN_TOP_LEVEL, 'RealESRNetModel': REALESRGAN_TOP_LEVEL}

DATASET_LOADER = {
    'name': 'str', 'type': 'str', 'phase': 'str', 'scale': 'int', 'io_backend': 'dict', 'num_worker_per_gpu': 'int',
    'batch_size_per_gpu': 'int', 'dataset_enlarge_ratio': 'int', 'prefetch_mode': 'str', 'num_prefetch_queue': 'int',
    'pin_memory': 'bool', 'persistent_workers': 'bool', 'use_shuffle': 'bool',
}
# Keys BasicSR's own datasets read (basicsr/data/*_dataset.py), for datasets registered by BasicSR.
BASICSR_DATASET_KEYS = {key: 'any' for key in (
    'dataroot_gt', 'dataroot_lq', 'dataroot_flow', 'meta_info_file', 'meta_info', 'filename_tmpl', 'gt_size',
    'use_hflip', 'use_rot', 'color', 'mean', 'std', 'cache_data', 'num_frame', 'padding', 'interval_list',
    'random_reverse', 'test_mode', 'val_partition', 'flip_sequence', 'use_duf_downsampling', 'db_paths',
    'client_keys', 'blur_kernel_size', 'kernel_list', 'kernel_prob', 'blur_sigma', 'betag_range', 'betap_range',
    'sinc_prob', 'blur_kernel_size2', 'kernel_list2', 'kernel_prob2', 'blur_sigma2', 'betag_range2', 'betap_range2',
    'sinc_prob2', 'final_sinc_prob', 'dataroot_gt_list', 'name_prefix', 'out_size', 'crop_components',
    'component_path', 'eye_enlarge_ratio')}

PATH = {
    'resume_state': 'str', 'ignore_resume_networks': 'str_or_list',
    # filled in by BasicSR's parser
    'experiments_root': 'str', 'results_root': 'str', 'models': 'str', 'training_states': 'str', 'log': 'str',
    'visualization': 'str',
}
PATH_NETWORK_KEYS = {'pretrain_network_': 'str', 'param_key_': 'str', 'strict_load_': 'bool'}

TRAIN = {
    'optim_g': 'dict', 'optim_d': 'dict', 'scheduler': 'dict', 'total_iter': 'int', 'warmup_iter': 'int',
    'ema_decay': 'number', 'net_d_iters': 'int', 'net_d_init_iters': 'int',
    # BasicSR's StyleGAN2 / video / DFDNet models
    'r1_reg_weight': 'number', 'path_reg_weight': 'number', 'net_g_reg_every': 'int', 'net_d_reg_every': 'int',
    'mixing_prob': 'number', 'lr_flow': 'number', 'fix_flow': 'int', 'flow_lr_mul': 'number',
    'dcn_lr_mul': 'number',
}
VAL = {
    'val_freq': 'number', 'save_img': 'bool', 'suffix': 'str', 'pbar': 'bool', 'metrics': 'dict',
    'center_frame_only': 'bool', 'flip_seq': 'bool', 'num_val_samples': 'int',
}
LOGGER = {'print_freq': 'int', 'save_checkpoint_freq': 'number', 'use_tb_logger': 'bool', 'wandb': 'dict'}
WANDB = {'project': 'str', 'resume_id': 'str'}
DIST_PARAMS = {'backend': 'str', 'port': 'int'}
# The harness's epoch-counted keys (restorevar_plugin.epoch_schedule), by section.
EPOCH_KEYS = {}
for _section, _epoch_key, _ in (TOTAL_EPOCHS, *FREQUENCIES):
    EPOCH_KEYS.setdefault(_section, {})[_epoch_key] = 'number'
OPTIMIZER_EXTRAS = {'type': 'str', 'no_decay_keywords': 'list', 'lr_mult': 'dict'}
METRIC_EXTRAS = {'type': 'str', 'better': 'str'}
KIND_NAMES = {'str': 'a string', 'int': 'an integer', 'number': 'a number', 'bool': 'true or false',
              'list': 'a list', 'dict': 'a mapping', 'int_or_auto': 'an integer or auto',
              'str_or_list': 'a string or a list'}


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def kind_matches(kind, value):
    """Whether ``value`` is of ``kind`` (see the module docstring); ``None`` always is."""
    if value is None or kind == 'any':
        return True
    checks = {
        'str': lambda v: isinstance(v, str),
        'int': lambda v: isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer(),
        'number': _is_number,
        'bool': lambda v: isinstance(v, bool),
        'list': lambda v: isinstance(v, (list, tuple)),
        'dict': lambda v: isinstance(v, dict),
        'int_or_auto': lambda v: v == 'auto' or isinstance(v, int) and not isinstance(v, bool),
        'str_or_list': lambda v: isinstance(v, (str, list, tuple)),
    }
    return checks[kind](value)


def kind_of_default(default):
    """The kind a constructor parameter expects, inferred from its default value."""
    if isinstance(default, bool):
        return 'bool'
    if isinstance(default, (int, float)):
        return 'number'
    if isinstance(default, (list, tuple)):
        return 'list'
    return 'any'


def signature_schema(target, skip=()):
    """``{parameter: kind}`` of ``target``'s constructor (or a function), or None when it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    schema = {}
    for name, parameter in parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if name in skip or name == 'self' or parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        empty = parameter.default is inspect.Parameter.empty
        schema[name] = 'any' if empty else kind_of_default(parameter.default)
    return schema


def model_schema(model_class):
    """The ``option_schema`` declarations of ``model_class`` and its bases merged (subclasses win)."""
    merged = {}
    for klass in reversed(inspect.getmro(model_class) if model_class is not None else ()):
        for section, keys in (vars(klass).get('option_schema') or {}).items():
            merged.setdefault(section, {}).update(keys)
    return merged


class OptionChecker:
    """Collects the problems of one option dict; see :func:`check_options`."""

    def __init__(self, opt):
        self.opt = opt
        self.problems = []

    def report(self, where, message):
        """Record a problem of the option at YAML path ``where``."""
        self.problems.append(f'{where}: {message}')

    def keys(self, section, schema, where, what='option'):
        """Check that ``section``'s keys are in ``schema`` (with the closest hint) and of its kinds."""
        if not isinstance(section, dict):
            if section is not None:
                self.report(where, f'expected a mapping, got {section!r}')
            return
        for key, value in section.items():
            path = f'{where}.{key}' if where else str(key)
            if key not in schema:
                close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1, cutoff=0.6)
                hint = f'; did you mean {close[0]}?' if close else f'; valid: {", ".join(sorted(map(str, schema)))}'
                self.report(path, f'unknown {what}{hint}')
            elif not kind_matches(schema[key], value):
                self.report(path, f'expected {KIND_NAMES[schema[key]]}, got {value!r}')

    def registered(self, kind, name, where):
        """The object registered in BasicSR's ``kind`` registry as ``name``, or None after reporting it (with close
        matches)."""
        if name is None:
            self.report(where, f'missing: name a registered {kind}')
            return None
        try:
            require_registered(kind, str(name), where)
        except UnknownRegistryNameError as error:
            self.problems.append(error.message)
            return None
        return REGISTRIES[kind].get(str(name))

    def constructed(self, block, target, where, extras, skip=(), label=None):
        """Check ``block``'s keys against ``target``'s signature plus ``extras``."""
        schema = signature_schema(target, skip)
        if schema is None:
            self.keys({key: value for key, value in block.items() if key in extras}, extras, where)
            return
        self.keys(block, {**schema, **extras}, where, what=f'argument of {label or target.__name__}')

    def run(self):
        """Check the whole option dict; returns the list of problems."""
        opt = self.opt
        if not isinstance(opt, dict):
            return [f'the option file must hold a mapping at the top level, got {type(opt).__name__}']
        model_class = self.registered('model', opt.get('model_type', 'SRModel'), 'model_type')
        declared = model_schema(model_class)
        network_keys = [key for key in opt if str(key).startswith('network_')]
        top = {**TOP_LEVEL, **{key: 'dict' for key in network_keys},
               **MODEL_TOP_LEVEL.get(getattr(model_class, '__name__', ''), {}), **declared.get('', {})}
        self.keys(opt, top, '')
        for key in network_keys:
            self.network(opt[key], key)
        self.datasets(opt.get('datasets'))
        self.path(opt.get('path'), network_keys, declared.get('path', {}))
        self.train(opt.get('train'), declared.get('train', {}))
        self.val(opt.get('val'), declared.get('val', {}))
        self.keys(opt.get('logger'), {**LOGGER, **EPOCH_KEYS['logger']}, 'logger')
        if isinstance(opt.get('logger'), dict):
            self.keys(opt['logger'].get('wandb'), WANDB, 'logger.wandb')
        self.keys(opt.get('dist_params'), DIST_PARAMS, 'dist_params')
        for required in ('name', 'datasets', 'path'):
            if required not in opt:
                self.report(required, 'missing (BasicSR needs it)')
        return self.problems

    def network(self, block, where):
        """``network_<x>``: a registered arch and arguments of its constructor."""
        if not isinstance(block, dict):
            self.report(where, f'expected a mapping with a type, got {block!r}')
            return
        arch = self.registered('arch', block.get('type'), f'{where}.type')
        if arch is not None:
            self.constructed(block, arch, where, {'type': 'str'})

    def datasets(self, datasets):
        """``datasets.<phase>``: train / val* / test* entries, registered types, loader and dataset keys."""
        if not isinstance(datasets, dict):
            if datasets is not None:
                self.report('datasets', f'expected a mapping of phases, got {datasets!r}')
            return
        for phase, dataset_opt in datasets.items():
            where = f'datasets.{phase}'
            if str(phase).split('_')[0] not in ('train', 'val', 'test'):
                close = difflib.get_close_matches(str(phase).split('_')[0], ['train', 'val', 'test'], n=1, cutoff=0.5)
                hint = f'; did you mean {close[0]}?' if close else ''
                self.report(where, f'a dataset phase must be train, val, val_<n> or test_<n>{hint}')
            if not isinstance(dataset_opt, dict):
                self.report(where, f'expected a mapping, got {dataset_opt!r}')
                continue
            dataset_class = self.registered('dataset', dataset_opt.get('type'), f'{where}.type')
            own = getattr(dataset_class, 'option_keys', None)
            if own is not None:
                schema = {key: 'any' for key in own}
            elif dataset_class is not None and dataset_class.__module__.startswith('basicsr.'):
                schema = BASICSR_DATASET_KEYS
            else:
                schema = {key: 'any' for key in dataset_opt if key not in DATASET_LOADER}
            self.keys(dataset_opt, {**schema, **DATASET_LOADER}, where)

    def path(self, path_opt, network_keys, declared):
        """``path``: BasicSR's keys, ``pretrain_network_<x>`` / ``param_key_<x>`` / ``strict_load_<x>`` for the
        network blocks present, and the model's declared keys."""
        schema = dict(PATH, **declared)
        for key in network_keys:
            for prefix, kind in PATH_NETWORK_KEYS.items():
                schema[prefix + key.removeprefix('network_')] = kind
        self.keys(path_opt, schema, 'path')

    def train(self, train_opt, declared):
        """``train``: BasicSR's and the model's keys; optimizers, the scheduler and ``*_opt`` loss blocks."""
        if not isinstance(train_opt, dict):
            self.keys(train_opt, {}, 'train')
            return
        losses = {key: 'dict' for key in train_opt if str(key).endswith('_opt')}
        self.keys(train_opt, {**TRAIN, **EPOCH_KEYS['train'], **losses, **declared}, 'train')
        for key in losses:
            block = train_opt[key]
            if isinstance(block, dict) and block.get('type') is not None:
                loss = self.registered('loss', block['type'], f'train.{key}.type')
                if loss is not None:
                    self.constructed(block, loss, f'train.{key}', {'type': 'str'})
        for key in ('optim_g', 'optim_d'):
            block = train_opt.get(key)
            if isinstance(block, dict):
                optimizer = getattr(torch.optim, str(block.get('type')), None)
                if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
                    self.report(f'train.{key}.type', f'{block.get("type")!r} is not a torch.optim optimizer')
                else:
                    self.constructed(block, optimizer, f'train.{key}', OPTIMIZER_EXTRAS, skip=('params', ))
        block = train_opt.get('scheduler')
        if isinstance(block, dict):
            known = {**SCHEDULERS, **BASICSR_SCHEDULERS}
            scheduler = known.get(block.get('type'))
            if scheduler is None:
                close = difflib.get_close_matches(str(block.get('type')), list(known), n=1, cutoff=0.5)
                hint = f'; did you mean {close[0]}?' if close else f'; known: {", ".join(sorted(known))}'
                self.report('train.scheduler.type', f'unknown scheduler {block.get("type")!r}{hint}')
            else:
                self.constructed(block, scheduler, 'train.scheduler', {'type': 'str', **EPOCH_KEYS['train.scheduler']},
                                 skip=('optimizer', ))

    def val(self, val_opt, declared):
        """``val``: BasicSR's and the model's keys, and each metric's registered function and arguments."""
        self.keys(val_opt, {**VAL, **EPOCH_KEYS['val'], **declared}, 'val')
        if not isinstance(val_opt, dict):
            return
        try:
            resolve_metrics(val_opt)  # the protocol and how val.metrics changes it
        except ValueError as error:
            self.problems.append(str(error))
        metrics = val_opt.get('metrics')
        if not isinstance(metrics, dict):
            return
        for label, metric_opt in metrics.items():
            where = f'val.metrics.{label}'
            if not isinstance(metric_opt, dict):
                continue  # ~ removes a protocol metric; anything else is reported by resolve_metrics
            metric = self.registered('metric', metric_opt.get('type'), f'{where}.type')
            if metric is not None:
                self.constructed(metric_opt, metric, where, METRIC_EXTRAS, skip=('img', 'img2'))


def check_options(opt):
    """Every problem of an option dict, one line each starting with its YAML path (empty when it is valid).

    Args:
        opt (dict): The option file as read from YAML (``--force_yml`` applied), before BasicSR's parser runs.

    Returns:
        list[str]
    """
    return OptionChecker(opt).run()


def registry_problems(opt):
    """Only the registry-name problems of a possibly partial option dict (model, networks, datasets, losses,
    metrics and the ``val`` protocol), with the same messages as :func:`check_options`."""
    checker = OptionChecker(opt)
    checker.registered('model', opt.get('model_type', 'SRModel'), 'model_type')
    for key, value in opt.items():
        if str(key).startswith('network_') and isinstance(value, dict):
            checker.registered('arch', value.get('type'), f'{key}.type')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        checker.registered('dataset', (dataset_opt or {}).get('type'), f'datasets.{phase}.type')
    for key, value in (opt.get('train') or {}).items():
        if str(key).endswith('_opt') and isinstance(value, dict) and 'type' in value:
            checker.registered('loss', value['type'], f'train.{key}.type')
    val_opt = opt.get('val') or {}
    try:
        resolve_metrics(val_opt)
    except ValueError as error:
        checker.problems.append(str(error))
    for label, metric_opt in (val_opt.get('metrics') or {}).items():
        if isinstance(metric_opt, dict):
            checker.registered('metric', metric_opt.get('type'), f'val.metrics.{label}.type')
    return checker.problems
