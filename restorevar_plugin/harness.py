"""Run BasicSR's own ``train_pipeline`` / ``test_pipeline`` with the plugin's fixes.

BasicSR 1.4.2 assumes CUDA and the current directory in a few places. While one pipeline runs,
:func:`basicsr_runtime` replaces the eleven attributes listed in :data:`PATCHED_ATTRIBUTES` and restores
every one of them when the pipeline returns or raises (nothing is patched at import time):

* ``sys.argv`` -> the arguments for BasicSR's own parser (``-opt``, ``--launcher``, ...), which reads
  ``sys.argv``;
* ``basicsr.utils.options.init_dist`` -> :func:`init_dist`: the backend is ``nccl`` with a GPU and
  ``gloo`` without (``dist_params.backend`` overrides), no CUDA device arithmetic on CPU;
* ``basicsr.{train,test}.parse_options`` -> BasicSR's parser followed by :func:`finalize_options`:
  one root for every relative path, weight files checked, GPU-only options downgraded on a CPU-only machine;
* ``basicsr.train.load_resume_state`` -> :func:`load_resume_state`: the state is looked for under the
  run's root and loaded onto the run's device (CPU included); ``--auto_resume`` falls back from an unreadable
  latest state to the newest readable one;
* ``basicsr.{train,test}.build_dataloader`` -> :meth:`PipelineRun.build_dataloader`: validation and test sets honour
  ``batch_size_per_gpu`` and ``num_worker_per_gpu`` (BasicSR forces 1 and 0), for batched inference;
* ``basicsr.train.create_train_val_dataloader`` -> BasicSR's, converting the epoch-counted options
  (``train.total_epochs`` ..., :mod:`restorevar_plugin.epoch_schedule`) to iterations as soon as the train
  set is built, before BasicSR reads ``train.total_iter`` and the model builds its schedulers. For that, it
  replaces ``basicsr.train.build_dataset`` while it runs, and restores it before returning;
* ``basicsr.train.EnlargedSampler`` -> :class:`~restorevar_plugin.data.resumable_sampler.ResumableEnlargedSampler`
  (same indices and order): on resume, the epoch continues after the batches already trained on, and every
  train item's randomness is keyed by its draw; the train loader's iterator seeds come from its own
  generator, not from the global one the training state restores;
* ``basicsr.{train,test}.make_exp_dirs`` -> :func:`make_exp_dirs`: only the output folders BasicSR's parser
  derives (``experiments_root`` / ``results_root``, ``models``, ``training_states``, ``log``,
  ``visualization``) are created. BasicSR's own version calls ``os.makedirs`` on every other ``path:`` entry
  too, which turns a missing ``path.pretrain_restorevar: pretrained/restorevar.pth`` into an empty folder of
  that name and fails on an existing file or a ``~`` value.

Before anything is written, every weight file named under ``path:`` (keys starting with ``pretrain_``) must
exist: a missing one stops the run with its name, where it was looked for and where to get it.

Before BasicSR's parser runs, the option file is read (a YAML syntax error names the line) and checked
against :mod:`restorevar_plugin.option_schema`: every problem is reported at once, before anything is built
or written.

The root is the current directory unless ``--root DIR`` is given. Relative paths in the option file
resolve against it: ``experiments/``, ``results/``, ``tb_logger/``, dataset paths (keys starting with
``dataroot`` or ending in ``_root``, ``_dir``, ``_dirs``, ``_file``, ``_folder``, ``_path``),
``path.pretrain_*``, ``path.resume_state`` and ``--auto_resume``'s search.
"""
import contextlib
import functools
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from basicsr.data import build_dataloader as basicsr_build_dataloader
from basicsr.data import build_dataset as basicsr_build_dataset
from basicsr.utils import check_resume, mkdir_and_rename, scandir
from basicsr.utils.dist_util import master_only
from basicsr.utils.options import _postprocess_yml_value, ordered_yaml
from basicsr.utils.registry import MODEL_REGISTRY

from restorevar_plugin.checkpoints import (
    CheckpointError,
    describe_load_error,
    resolve_checkpoint,
)
from restorevar_plugin.data.resumable_sampler import ResumableEnlargedSampler
from restorevar_plugin.epoch_schedule import (
    EpochOptionError,
    apply_epoch_schedule,
    check_epoch_options,
)
from restorevar_plugin.option_schema import check_options, registry_problems

PATH_SUFFIXES = ('_root', '_dir', '_dirs', '_file', '_folder', '_path')
# Dataset options holding whole dataset blocks (InContextPairedDataset's query / context, ConcatenatedDataset's parts).
NESTED_DATASET_KEYS = ('query', 'context', 'parts')
# (module, attribute) pairs that basicsr_runtime replaces, and only while a pipeline runs.
PATCHED_ATTRIBUTES = (
    ('sys', 'argv'),
    ('basicsr.utils.options', 'init_dist'),
    ('basicsr.train', 'parse_options'),
    ('basicsr.test', 'parse_options'),
    ('basicsr.train', 'load_resume_state'),
    ('basicsr.train', 'EnlargedSampler'),
    ('basicsr.train', 'build_dataloader'),
    ('basicsr.test', 'build_dataloader'),
    ('basicsr.train', 'create_train_val_dataloader'),
    ('basicsr.train', 'make_exp_dirs'),
    ('basicsr.test', 'make_exp_dirs'),
)
# The folders BasicSR's parse_options derives under experiments/<name> (train) or results/<name> (test).
OUTPUT_DIR_KEYS = ('models', 'training_states', 'log', 'visualization')


class OptionError(ValueError):
    """An option file asks for something the harness cannot do; the message names the option."""


def init_dist(launcher, backend=None, port=None, **kwargs):
    """Initialise ``torch.distributed`` for ``torchrun`` (``pytorch``) or ``slurm`` launches.

    Args:
        launcher (str): ``'pytorch'`` (reads ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` set by torchrun) or
            ``'slurm'`` (reads ``SLURM_*``).
        backend (str | None): ``nccl``/``gloo``; None picks ``nccl`` with a GPU, ``gloo`` without.
        port (int | None): Master port for slurm (default: ``MASTER_PORT`` or 29500).
        **kwargs: Passed to :func:`torch.distributed.init_process_group`.
    """
    has_gpu = torch.cuda.is_available()
    backend = backend or ('nccl' if has_gpu else 'gloo')
    if launcher == 'slurm':
        proc_id = int(os.environ['SLURM_PROCID'])
        node_list = os.environ['SLURM_NODELIST']
        first_host = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ['MASTER_PORT'] = str(port) if port is not None else os.environ.get('MASTER_PORT', '29500')
        os.environ['MASTER_ADDR'] = first_host
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = str(proc_id)
        gpus_per_node = max(torch.cuda.device_count(), 1)
        os.environ['LOCAL_RANK'] = str(proc_id % gpus_per_node)
    elif launcher != 'pytorch':
        raise ValueError(f'--launcher must be none, pytorch or slurm; got {launcher!r}')
    if has_gpu:
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


def _resolve(value, root):
    if isinstance(value, str) and value and '://' not in value:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else Path(root) / path)
    if isinstance(value, list):
        return [_resolve(item, root) for item in value]
    return value


def _is_path_key(key):
    return key.startswith('dataroot') or key.endswith(PATH_SUFFIXES)


def _resolve_dataset_paths(dataset_opt, root):
    """Resolve the path keys of a dataset block and of the dataset blocks nested in it (:data:`NESTED_DATASET_KEYS`)."""
    for key, value in dataset_opt.items():
        if _is_path_key(key):
            dataset_opt[key] = _resolve(value, root)
        elif key in NESTED_DATASET_KEYS:
            for block in (value if isinstance(value, list) else [value]):
                if isinstance(block, dict):
                    _resolve_dataset_paths(block, root)


def resolve_option_paths(opt, root):
    """Make dataset paths (nested dataset blocks included), ``path.pretrain_*`` and ``path.resume_state``
    absolute against ``root`` (in place)."""
    for dataset_opt in (opt.get('datasets') or {}).values():
        _resolve_dataset_paths(dataset_opt, root)
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('pretrain_') or key == 'resume_state':
            opt['path'][key] = _resolve(value, root)


def check_weight_files(opt):
    """Raise ``FileNotFoundError`` (file, place looked at, where to get it) for a missing ``path.pretrain_*`` file."""
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('pretrain_') and value:
            try:
                resolve_checkpoint(value)
            except FileNotFoundError as error:
                raise FileNotFoundError(f'path.{key}: {error}') from None


@master_only
def make_exp_dirs(opt):
    """Create the run's output folders, never a folder named by a ``path:`` option of the user.

    ``experiments_root`` (train) or ``results_root`` (test) is archived when it exists and created, as BasicSR
    does; then the derived folders of :data:`OUTPUT_DIR_KEYS`.
    """
    path_opt = opt['path']
    mkdir_and_rename(path_opt['experiments_root' if opt['is_train'] else 'results_root'])
    for key in OUTPUT_DIR_KEYS:
        if path_opt.get(key):
            os.makedirs(path_opt[key], exist_ok=True)


def check_option_schema(opt, option_file=None):
    """Report every problem of an option dict at once (see :mod:`restorevar_plugin.option_schema`).

    Unknown keys (with the closest valid one), values of the wrong kind, ``type`` names no registry holds (with
    close matches) and constructor arguments a class does not take are all listed, one line each with its YAML
    path.

    Raises:
        OptionError: naming ``option_file`` and listing the problems.
    """
    problems = check_options(opt)
    if problems:
        head = f'{option_file}: ' if option_file else ''
        count = f'{len(problems)} problems' if len(problems) > 1 else '1 problem'
        raise OptionError(f'{head}{count} in the options:\n  ' + '\n  '.join(problems))


def check_registry_names(opt):
    """Only the registry names of a partial option dict (e.g. a benchmark method's model options), checked as
    :func:`check_option_schema` checks them; ``OptionError`` lists every unknown name with close matches."""
    problems = registry_problems(opt)
    if problems:
        raise OptionError('\n  '.join(problems))


def read_option_file(option_file, force_yml=None):
    """The option file as BasicSR reads it, with ``--force_yml`` entries applied; a YAML syntax error becomes an
    ``OptionError`` naming the file, line and column."""
    with open(option_file, encoding='utf-8') as handle:
        try:
            opt = yaml.load(handle, Loader=ordered_yaml()[0])
        except yaml.YAMLError as error:
            mark = getattr(error, 'problem_mark', None)
            where = f'{option_file}:{mark.line + 1}:{mark.column + 1}' if mark is not None else option_file
            problem = ' '.join(part for part in (getattr(error, 'context', None), getattr(error, 'problem', None))
                               if part) or str(error).splitlines()[0]
            raise OptionError(f'{where}: YAML syntax error: {problem}') from None
    for entry in force_yml or []:
        keys, _, value = entry.partition('=')
        if not _:
            raise OptionError(f'--force_yml {entry}: expected KEY:SUBKEY=VALUE')
        *parents, last = [key.strip() for key in keys.split(':')]
        target = opt
        for key in parents:
            if not isinstance(target, dict) or key not in target:
                raise OptionError(f'--force_yml {entry}: the option file has no {":".join(parents)} block')
            target = target[key]
        target[last] = _postprocess_yml_value(value.strip())
    return opt


def check_batched_evaluation(opt):
    """Refuse ``batch_size_per_gpu > 1`` on val/test sets unless the model validates batches.

    BasicSR's own models (``SRModel`` and its subclasses) read only the first image of a validation batch;
    a model declares ``supports_batched_validation = True`` when it handles every image.
    """
    model_class = MODEL_REGISTRY.get(opt.get('model_type', 'SRModel'))
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        batched = phase.split('_')[0] in ('val', 'test') and int(dataset_opt.get('batch_size_per_gpu', 1)) > 1
        if batched and not getattr(model_class, 'supports_batched_validation', False):
            raise OptionError(f'datasets.{phase}.batch_size_per_gpu: {model_class.__name__} validates one image at '
                             'a time; remove the option or use 1')


def finalize_options(opt, root):
    """Post-process BasicSR's parsed options for the plugin (see the module docstring)."""
    opt['root_path'] = str(root)
    resolve_option_paths(opt, root)
    check_batched_evaluation(opt)
    try:
        check_epoch_options(opt)
    except EpochOptionError as error:
        raise OptionError(str(error)) from error
    train_opt = (opt.get('datasets') or {}).get('train') or {}
    if train_opt.get('prefetch_mode') == 'cuda' and not torch.cuda.is_available():
        print('prefetch_mode: cuda needs a GPU; using the CPU prefetcher.', flush=True)
        train_opt['prefetch_mode'] = 'cpu'
    return opt


def _read_state(state_path, device):
    """The training state at ``state_path`` on ``device``; ``CheckpointError`` when it cannot be read."""
    try:
        return torch.load(state_path, map_location=device, weights_only=True)
    except Exception as error:  # truncated, not a torch file, or pickled objects
        raise CheckpointError(f'training state {state_path} is corrupt or not a training state '
                              f'({describe_load_error(error)})') from None


def load_resume_state(opt):
    """Find (``--auto_resume``) or read (``path.resume_state``) the training state, on the run's device.

    ``--auto_resume`` takes the highest-iteration readable ``*.state`` in
    ``<root>/experiments/<name>/training_states``: an unreadable one (e.g. truncated by a full disk) is skipped
    with a message naming it and why, and left in place. When none is readable, or ``path.resume_state``
    cannot be read, the run stops instead of starting over (which would archive the experiment).
    Networks are reloaded from ``models/net_<x>_<iter>.pth`` as BasicSR does, except those the run never
    saved (frozen networks of a stage), which keep their configured ``pretrain_network_<x>``.
    """
    on_gpu = opt['num_gpu'] != 0 and torch.cuda.is_available()
    device = torch.device('cuda', torch.cuda.current_device()) if on_gpu else torch.device('cpu')
    resume_state = None
    if opt['auto_resume']:
        state_dir = opt['path']['training_states']
        names = scandir(state_dir, suffix='.state', recursive=False) if os.path.isdir(state_dir) else []
        iterations = sorted((int(name[:-len('.state')]) for name in names if name[:-len('.state')].isdigit()),
                            reverse=True)
        skipped = []
        for iteration in iterations:
            state_path = os.path.join(state_dir, f'{iteration}.state')
            try:
                resume_state = _read_state(state_path, device)
            except CheckpointError as error:
                print(f'--auto_resume: skipping {error}; trying an older state (nothing is deleted).', flush=True)
                skipped.append(state_path)
                continue
            opt['path']['resume_state'] = state_path
            break
        if skipped and resume_state is None:
            raise CheckpointError(f'--auto_resume: no readable training state in {state_dir} '
                                  f'(skipped {", ".join(skipped)}); nothing was deleted')
    elif opt['path'].get('resume_state'):
        state_path = opt['path']['resume_state']
        if not os.path.isfile(state_path):
            raise FileNotFoundError(f'path.resume_state: no training state at {state_path}')
        resume_state = _read_state(state_path, device)
    if resume_state is None:
        return None
    configured = dict(opt['path'])
    check_resume(opt, resume_state['iter'])
    for key, value in opt['path'].items():
        if key.startswith('pretrain_network_') and value != configured.get(key) and not os.path.isfile(value):
            print(f'{key}: no {os.path.basename(value)} was saved (the network is not trained by this run); '
                  f'keeping {configured.get(key)}', flush=True)
            opt['path'][key] = configured.get(key)
    return resume_state


class PipelineRun:
    """What the replaced BasicSR functions of one pipeline share: the parsed options and the resume state."""

    def __init__(self):
        self.opt = None
        self.resume_state = None

    def train_sampler(self, dataset, num_replicas, rank, ratio=1):
        """Stands in for BasicSR's ``EnlargedSampler(dataset, num_replicas, rank, ratio)``."""
        return ResumableEnlargedSampler(dataset, num_replicas, rank, ratio, seed=self.opt['manual_seed'])

    def resume_position(self, sampler, batch_size):
        """On resume, make ``sampler`` skip the batches of the state's epoch that were already trained on.

        BasicSR's epoch ``e`` starts after iteration ``e * B`` (``B = len(sampler) // batch_size`` batches per
        epoch, the last partial batch dropped), so the state of iteration ``k`` saved in epoch ``e`` has consumed
        ``k - e * B`` batches of that epoch.
        """
        if self.resume_state is None:
            return
        consumed = int(self.resume_state['iter']) - int(self.resume_state['epoch']) * (len(sampler) // batch_size)
        try:
            sampler.skip_batches(consumed, batch_size)
        except ValueError as error:
            raise OptionError(f'path.resume_state: {error}') from None

    def build_dataloader(self, dataset, dataset_opt, num_gpu=1, dist=False, sampler=None, seed=None):
        """BasicSR's ``build_dataloader``, with batched val/test sets and a resumable train loader.

        Val/test sets with ``batch_size_per_gpu`` are batched in dataset order (no shuffling, no dropped last
        batch; images of one batch must share a size, e.g. ``transform: paper_512``); without it BasicSR's
        loader (batch 1) is used. The train loader draws its iterators' seeds from its own generator (seeded by
        ``seed``), so starting an epoch does not advance the global generator, and resumes mid-epoch.
        """
        if dataset_opt['phase'] in ('val', 'test') and 'batch_size_per_gpu' in dataset_opt:
            return torch.utils.data.DataLoader(
                dataset, batch_size=int(dataset_opt['batch_size_per_gpu']), shuffle=False, drop_last=False,
                num_workers=int(dataset_opt.get('num_worker_per_gpu', 0)),
                pin_memory=dataset_opt.get('pin_memory', False))
        loader = basicsr_build_dataloader(dataset, dataset_opt, num_gpu=num_gpu, dist=dist, sampler=sampler, seed=seed)
        if dataset_opt['phase'] == 'train':
            loader.generator = torch.Generator().manual_seed(int(seed or 0))
            if isinstance(sampler, ResumableEnlargedSampler):
                self.resume_position(sampler, loader.batch_size)
        return loader


def build_dataloader(dataset, dataset_opt, num_gpu=1, dist=False, sampler=None, seed=None):
    """:meth:`PipelineRun.build_dataloader` outside a pipeline (nothing to resume), e.g. for evaluation sets."""
    return PipelineRun().build_dataloader(dataset, dataset_opt, num_gpu, dist, sampler, seed)


def create_train_val_dataloader(opt, logger, original):
    """BasicSR's ``create_train_val_dataloader`` (``original``), with the epoch-counted options of ``opt``
    converted to iterations (and logged) right after the train set is built."""
    import basicsr.train

    def build_dataset(dataset_opt):
        dataset = basicsr_build_dataset(dataset_opt)
        if dataset_opt['phase'] == 'train':
            for line in apply_epoch_schedule(opt, len(dataset)):
                logger.info(line)
        return dataset

    with _replaced(basicsr.train, 'build_dataset', build_dataset):
        return original(opt, logger)


def _dist_params(option_file):
    with open(option_file, encoding='utf-8') as handle:
        return (yaml.safe_load(handle) or {}).get('dist_params') or {}


@contextlib.contextmanager
def _replaced(module, name, value):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def basicsr_runtime(option_file, basicsr_argv):
    """Scope in which BasicSR's pipelines run with our fixes: :data:`PATCHED_ATTRIBUTES` replaced, then restored.

    The run's root is not an argument: BasicSR's pipelines receive it and pass it to ``parse_options``.

    Args:
        option_file (str): The option YAML (its ``dist_params`` choose the backend).
        basicsr_argv (list[str]): Arguments for BasicSR's own parser (``-opt`` etc.).
    """
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options as options_module

    original_parse = options_module.parse_options
    run = PipelineRun()

    def parse_options(root_path, is_train=True):
        opt, args = original_parse(root_path, is_train)
        run.opt = finalize_options(opt, root_path)
        check_weight_files(run.opt)
        return run.opt, args

    def resume_state(opt):
        run.resume_state = load_resume_state(opt)
        return run.resume_state

    dist_params = {key: value for key, value in _dist_params(option_file).items() if key in ('backend', 'port')}
    with contextlib.ExitStack() as stack:
        stack.enter_context(_replaced(sys, 'argv', [sys.argv[0], *basicsr_argv]))
        stack.enter_context(_replaced(options_module, 'init_dist', functools.partial(init_dist, **dist_params)))
        stack.enter_context(_replaced(basicsr.train, 'parse_options', parse_options))
        stack.enter_context(_replaced(basicsr.test, 'parse_options', parse_options))
        stack.enter_context(_replaced(basicsr.train, 'load_resume_state', resume_state))
        stack.enter_context(_replaced(basicsr.train, 'EnlargedSampler', run.train_sampler))
        stack.enter_context(_replaced(basicsr.train, 'build_dataloader', run.build_dataloader))
        stack.enter_context(_replaced(basicsr.test, 'build_dataloader', run.build_dataloader))
        stack.enter_context(_replaced(basicsr.train, 'create_train_val_dataloader', functools.partial(
            create_train_val_dataloader, original=basicsr.train.create_train_val_dataloader)))
        stack.enter_context(_replaced(basicsr.train, 'make_exp_dirs', make_exp_dirs))
        stack.enter_context(_replaced(basicsr.test, 'make_exp_dirs', make_exp_dirs))
        yield


def run_pipeline(kind, args):
    """Run BasicSR's ``train_pipeline`` or ``test_pipeline`` for parsed CLI ``args``.

    Args:
        kind (str): ``'train'`` or ``'test'``.
        args (argparse.Namespace): ``opt``, ``launcher``, ``auto_resume``, ``debug``, ``force_yml``,
            ``root``.
    """
    from basicsr.test import test_pipeline
    from basicsr.train import train_pipeline

    option_file = os.path.abspath(args.opt)
    if not os.path.isfile(option_file):
        raise FileNotFoundError(f'-opt: option file not found: {option_file}')
    check_option_schema(read_option_file(option_file, args.force_yml), option_file)
    root = Path(args.root or os.getcwd()).resolve()
    basicsr_argv = ['-opt', option_file, '--launcher', args.launcher]
    if getattr(args, 'auto_resume', False):
        basicsr_argv.append('--auto_resume')
    if args.debug:
        basicsr_argv.append('--debug')
    if args.force_yml:
        basicsr_argv += ['--force_yml', *args.force_yml]
    pipeline = train_pipeline if kind == 'train' else test_pipeline
    with basicsr_runtime(option_file, basicsr_argv):
        pipeline(str(root))
