"""``PluginBaseModel``: BasicSR's ``BaseModel`` with what 1.4.2 lacks for our recipes.

Every model of the plugin derives from it. It adds, all driven from YAML:

* device handling: DDP on CPU (gloo, no ``device_ids``) and GPU, DataParallel only for ``num_gpu > 1``;
* optimizers: any ``torch.optim`` class (``AdamW`` ...) with parameter groups
  (``no_decay_keywords``, ``lr_mult``), see :meth:`build_optimizer`;
* schedulers: BasicSR's two plus :mod:`~restorevar_plugin.models.lr_schedulers`;
* a guard against non-finite training (``train.nonfinite``, see :meth:`backward_and_step`): a step whose loss
  (or clipped gradient norm) is not finite is skipped and counted, and non-finite weights are never saved;
* mixed precision (``train.amp: fp16 | bf16``) on GPU only, with a ``GradScaler`` whose state is saved in
  and restored from the ``.state`` file; gradient clipping (``train.grad_clip``);
* EMA of parameters *and* buffers;
* ``val.tf32``: TF32 matmul / cuDNN during validation and testing on GPU, as the official RestoreVAR inference
  (:mod:`~restorevar_plugin.models.matmul_precision`);
* checkpoints written atomically (a crash never leaves a half-written ``.pth`` / ``.state``) and read
  with :func:`restorevar_plugin.checkpoints.load_network` (BasicSR, Lightning, VAR and flat layouts).
"""
import contextlib
import math
import os
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from basicsr.models import lr_scheduler as basicsr_lr_scheduler
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from torch.nn.parallel import DataParallel, DistributedDataParallel

from restorevar_plugin.atomic_files import atomic_output
from restorevar_plugin.checkpoints import load_network
from restorevar_plugin.models.cpu_heap import retained_cpu_heap
from restorevar_plugin.models.inference_options import INFERENCE_OPTION_SCHEMA, retain_cpu_memory_requested
from restorevar_plugin.models.lr_schedulers import SCHEDULERS
from restorevar_plugin.models.matmul_precision import tf32_scope, validation_uses_tf32

AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
NONFINITE_MODES = ('skip', 'stop')
DEFAULT_MAX_NONFINITE_SKIPS = 10


class NonFiniteTrainingError(RuntimeError):
    """Training produced a non-finite loss, gradient or weight; the message names the iteration and the batch."""
BASICSR_SCHEDULERS = {
    'MultiStepLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'MultiStepRestartLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'CosineAnnealingRestartLR': basicsr_lr_scheduler.CosineAnnealingRestartLR,
}


def atomic_torch_save(obj, path):
    """``torch.save`` to ``path``, whole or not at all (:func:`~restorevar_plugin.atomic_files.atomic_output`)."""
    with atomic_output(path) as tmp_name:
        torch.save(obj, tmp_name)


class CappedGradScaler(torch.amp.GradScaler):
    """``torch.amp.GradScaler`` whose loss scale never grows past ``max_scale`` (VAR's AmpOptimizer caps it at
    32768); ``max_scale=None`` behaves exactly as the parent."""

    def __init__(self, device='cuda', max_scale=None, **kwargs):
        super().__init__(device, **kwargs)
        self.max_scale = max_scale

    def update(self, new_scale=None):
        """Update the scale as the parent does, then clamp it to ``max_scale``."""
        super().update(new_scale)
        if self.is_enabled() and self.max_scale is not None and self.get_scale() > self.max_scale:
            super().update(float(self.max_scale))


def rng_state():
    """Python, NumPy, torch CPU and (when present) every CUDA device's generator states, in types
    ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state['state']['key'] = numpy_state['state']['key'].tolist()
    state = {'python': random.getstate(), 'numpy': numpy_state, 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore the generator states saved by :func:`rng_state` (CUDA states only when CUDA is available)."""
    random.setstate(state['python'])
    numpy_state = dict(state['numpy'])
    numpy_state['state'] = dict(numpy_state['state'], key=np.asarray(numpy_state['state']['key'], dtype=np.uint32))
    np.random.set_state(numpy_state)
    torch.set_rng_state(state['torch'].cpu())
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda_state.cpu() for cuda_state in state['cuda']])


def plain_best_results(best_metric_results):
    """BaseModel's ``{dataset: {metric: {'better', 'val', 'iter'}}}`` with plain Python numbers (metrics return NumPy
    scalars, which ``torch.load(weights_only=True)`` refuses)."""
    return {dataset: {metric: {'better': str(record['better']), 'val': float(record['val']),
                               'iter': int(record['iter'])} for metric, record in metrics.items()}
            for dataset, metrics in best_metric_results.items()}


def param_groups(named_parameters, weight_decay=0.0, no_decay_keywords=None, lr_mult=None):
    """Split trainable parameters into optimizer groups by weight decay and learning-rate multiplier.

    With ``no_decay_keywords`` given (VAR's rule), a parameter gets no weight decay when it is 1-D, its
    name ends in ``bias`` or contains one of the keywords; 0-D scalars keep the decay, as in the
    reference. ``lr_mult`` maps a name substring to a learning-rate multiplier (first match wins).

    Args:
        named_parameters (Iterable[tuple[str, Parameter]]): e.g. ``net.named_parameters()``.
        weight_decay (float): Decay of the decayed group.
        no_decay_keywords (list[str] | None): None puts every parameter in the decayed group.
        lr_mult (dict[str, float] | None): Name substring -> multiplier.

    Returns:
        list[dict]: Groups with ``params``, ``weight_decay``, ``lr_mult`` and ``names``.
    """
    groups = defaultdict(list)
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        no_decay = no_decay_keywords is not None and (
            param.ndim == 1 or name.endswith('bias') or any(key in name for key in no_decay_keywords))
        mult = next((value for key, value in (lr_mult or {}).items() if key in name), 1.0)
        groups[(0.0 if no_decay else weight_decay, mult)].append((name, param))
    return [{
        'params': [param for _, param in members],
        'names': [name for name, _ in members],
        'weight_decay': decay,
        'lr_mult': mult,
    } for (decay, mult), members in groups.items()]


class PluginBaseModel(BaseModel):
    """BaseModel with optimizers, schedulers, AMP, clipping, EMA and safe checkpoints from YAML.

    Subclasses call :meth:`build_optimizer` in ``setup_optimizers``, wrap forward passes in
    :meth:`autocast` and replace ``loss.backward(); optimizer.step()`` by :meth:`backward_and_step`.
    ``ema_network`` names the network whose EMA :attr:`net_ema` holds (``net_g``, or whichever network a
    RestoreVAR stage trains). BasicSR's ``SRModel`` code reads and writes the EMA as ``net_g_ema``: that name
    is an alias of :attr:`net_ema`, kept for BasicSR's code only.
    """

    ema_network = 'net_g'
    # Option keys read here and by restorevar_plugin.evaluation, for restorevar_plugin.option_schema (subclasses
    # add theirs).
    option_schema = {'train': {'grad_clip': 'number', 'amp': 'any', 'grad_scaler': 'dict', 'nonfinite': 'str',
                               'nonfinite_max_skips': 'int'},
                     'val': {'tf32': 'bool', 'protocol': 'str', 'save_grid': 'bool', 'strict': 'bool',
                             **INFERENCE_OPTION_SCHEMA}}

    @property
    def net_g_ema(self):
        """BasicSR's name for :attr:`net_ema` (``SRModel``'s training setup, ``test`` and ``save`` use it)."""
        return self.net_ema

    @net_g_ema.setter
    def net_g_ema(self, network):
        self.net_ema = network

    def __init__(self, opt):
        train_opt = (opt.get('train') or {}) if opt['is_train'] else {}
        self.nonfinite_mode = train_opt.get('nonfinite', 'skip')
        if self.nonfinite_mode not in NONFINITE_MODES:
            raise ValueError(f'train.nonfinite must be skip or stop; got {self.nonfinite_mode!r}')
        self.max_nonfinite_skips = int(train_opt.get('nonfinite_max_skips', DEFAULT_MAX_NONFINITE_SKIPS))
        self.nonfinite_skips = 0
        self.consecutive_skips = {}
        self.current_iter = 0
        self.batch_paths = []
        self._scaler_pending = False
        self.amp_dtype = self._select_amp_dtype(train_opt.get('amp'), on_gpu=opt['num_gpu'] != 0)
        self.grad_clip = train_opt.get('grad_clip')
        self.grad_scaler = CappedGradScaler(
            'cuda', enabled=self.amp_dtype == torch.float16, **train_opt.get('grad_scaler', {}))
        super().__init__(opt)
        self.validation_tf32 = validation_uses_tf32(opt.get('val'), self.device)
        if (opt.get('val') or {}).get('tf32') and not self.validation_tf32:
            get_root_logger().info('val.tf32: true has no effect without a GPU (validation runs in plain fp32).')

    @staticmethod
    def _select_amp_dtype(amp, on_gpu):
        if amp in (None, False, 'fp32', 'none'):
            return None
        if amp not in AMP_DTYPES:
            raise ValueError(f'train.amp must be one of fp16, bf16, fp32 or null; got {amp!r}')
        if not on_gpu:
            get_root_logger().info(f'train.amp: {amp} requested but no GPU is used: training in fp32.')
            return None
        return AMP_DTYPES[amp]

    def autocast(self):
        """Context manager: autocast to the configured AMP dtype on GPU, nothing on CPU / fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type='cuda', dtype=self.amp_dtype)

    def inference_memory(self):
        """Context of inference: on a CPU, freed memory stays mapped for reuse (``val.retain_cpu_memory``, see
        :mod:`restorevar_plugin.models.cpu_heap`); elsewhere nothing."""
        return retained_cpu_heap(retain_cpu_memory_requested(self.opt.get('val'), self.device))

    def update_learning_rate(self, current_iter, warmup_iter=-1):
        """BasicSR's per-iteration learning-rate update; also remembers ``current_iter`` for error messages."""
        self.current_iter = current_iter
        super().update_learning_rate(current_iter, warmup_iter)

    def feed_data(self, data):
        """Remember the batch's file names (``lq_path``, else ``gt_path``) for error messages, then the subclass's."""
        self.batch_paths = [os.path.basename(str(path)) for path in data.get('lq_path', data.get('gt_path', []))]
        super().feed_data(data)

    def _all_finite(self, value):
        """Whether ``value`` (a tensor) is finite in every process (all processes agree, so they skip together)."""
        finite = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
        if self.opt['dist']:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def _skip_nonfinite_step(self, what, optimizer, log):
        """Count, log and (per ``train.nonfinite``) stop on a skipped step; see :meth:`backward_and_step`."""
        optimizer.zero_grad(set_to_none=True)
        self.nonfinite_skips += 1
        index = self.optimizers.index(optimizer) if optimizer in self.optimizers else 0
        self.consecutive_skips[index] = self.consecutive_skips.get(index, 0) + 1
        terms = ', '.join(f'{name}={float(value.detach()):.4g}' for name, value in (log or {}).items()
                          if isinstance(value, torch.Tensor) and value.numel() == 1)
        batch = ', '.join(self.batch_paths) or 'file names unknown'
        message = (f'iteration {self.current_iter}: non-finite {what}{f" ({terms})" if terms else ""} on the batch '
                   f'{batch}')
        if self.nonfinite_mode == 'stop':
            raise NonFiniteTrainingError(f'{message}; stopping (train.nonfinite: stop)')
        if self.consecutive_skips[index] >= self.max_nonfinite_skips:
            raise NonFiniteTrainingError(f'{message}; stopping after {self.consecutive_skips[index]} consecutive '
                                         f'skipped steps (train.nonfinite_max_skips: {self.max_nonfinite_skips})')
        get_root_logger().warning(f'{message}; step skipped ({self.nonfinite_skips} skipped so far, '
                                  f'{self.consecutive_skips[index]} in a row)')

    def backward_and_step(self, loss, optimizer, log=None, parameters=None, update_scaler=True):
        """Backward (scaled for fp16), optional clipping of ``parameters``, optimizer step, scaler update.

        A non-finite ``loss`` (in any process) or, with clipping, a non-finite gradient norm of an fp32/bf16 step
        skips the step: gradients are dropped, the weights are untouched, and the skip is counted and logged with
        the iteration and the batch's file names. ``train.nonfinite: stop`` stops at the first one instead;
        the default ``skip`` stops after ``train.nonfinite_max_skips`` (10) consecutive skipped steps of one
        optimizer. Under fp16 the ``GradScaler`` keeps handling overflowing gradients itself.

        Args:
            loss (Tensor): Scalar loss.
            optimizer (Optimizer): The optimizer to step (its gradients must have been zeroed).
            log (dict | None): When clipping is on, receives ``grad_norm`` (a tensor, for ``reduce_loss_dict``);
                also named in the message of a skipped step.
            parameters (Iterable[Tensor] | None): Clipped to ``train.grad_clip`` when set; defaults to
                every parameter of ``optimizer``.
            update_scaler (bool): Update the fp16 loss scale after this step. With several optimizers per
                iteration (GAN stages), only the last step of the iteration updates it, as PyTorch requires.

        Returns:
            float | None: The total gradient norm before clipping, when clipping is on.

        Raises:
            NonFiniteTrainingError: ``train.nonfinite: stop``, or too many consecutive skipped steps.
        """
        index = self.optimizers.index(optimizer) if optimizer in self.optimizers else 0
        if not self._all_finite(loss):
            self._skip_nonfinite_step('loss', optimizer, log)
            if update_scaler and self._scaler_pending:
                self.grad_scaler.update()
                self._scaler_pending = False
            return None
        self.grad_scaler.scale(loss).backward()
        grad_norm = None
        if self.grad_clip:
            self.grad_scaler.unscale_(optimizer)
            if parameters is None:
                parameters = [p for group in optimizer.param_groups for p in group['params']]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, self.grad_clip))
            if log is not None:
                log['grad_norm'] = torch.tensor(grad_norm, device=loss.device)
            if not math.isfinite(grad_norm) and not self.grad_scaler.is_enabled():
                self._skip_nonfinite_step('gradient norm', optimizer, log)
                return grad_norm
        self.grad_scaler.step(optimizer)
        self.consecutive_skips[index] = 0
        if update_scaler:
            self.grad_scaler.update()
        self._scaler_pending = not update_scaler
        return grad_norm

    def model_to_device(self, net, find_unused_parameters=False):
        """Move ``net`` to the device; wrap in DDP (``device_ids`` only on GPU) or DataParallel.

        DDP looks for parameters without gradients when ``find_unused_parameters`` or the option of that
        name is true.
        """
        net = net.to(self.device)
        if self.opt['dist']:
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            find_unused = find_unused_parameters or self.opt.get('find_unused_parameters', False)
            net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net

    def broadcast_from_rank0(self, *networks):
        """Under DDP, give every process rank 0's parameters and buffers of ``networks`` (no-op otherwise).

        BasicSR seeds each process differently, so networks that are neither loaded from a file nor
        wrapped in DDP (which broadcasts only what it wraps) would otherwise differ between processes.
        """
        if not self.opt['dist']:
            return
        with torch.no_grad():
            for network in networks:
                for tensor in self.get_bare_model(network).state_dict().values():
                    torch.distributed.broadcast(tensor, src=0)

    def build_optimizer(self, named_parameters, optim_opt, label='optim_g'):
        """Build any ``torch.optim`` optimizer from an option block, with parameter groups.

        Args:
            named_parameters (Iterable[tuple[str, Parameter]]): Trainable candidates.
            optim_opt (dict): ``type`` (a ``torch.optim`` class name), ``lr`` and the optimizer's kwargs,
                plus ``no_decay_keywords`` and ``lr_mult`` (see :func:`param_groups`). Not modified.
            label (str): Option name, for error messages.
        """
        optim_opt = dict(optim_opt)
        optim_type = optim_opt.pop('type')
        optim_class = getattr(torch.optim, optim_type, None)
        if not (isinstance(optim_class, type) and issubclass(optim_class, torch.optim.Optimizer)):
            raise ValueError(f'train.{label}.type: {optim_type!r} is not a torch.optim optimizer')
        lr = float(optim_opt.pop('lr'))
        weight_decay = float(optim_opt.pop('weight_decay', 0.0))
        groups = param_groups(named_parameters, weight_decay, optim_opt.pop('no_decay_keywords', None),
                              optim_opt.pop('lr_mult', None))
        if not groups:
            raise ValueError(f'train.{label}: no trainable parameter to optimize')
        logger = get_root_logger()
        for group in groups:
            group['lr'] = lr * group['lr_mult']
            logger.info(f'{label} group: lr {group["lr"]:.3g}, weight_decay {group["weight_decay"]}, '
                        f'{len(group["params"])} tensors')
        return optim_class(groups, lr=lr, weight_decay=weight_decay, **optim_opt)

    def setup_schedulers(self):
        """One scheduler per optimizer from ``train.scheduler`` (BasicSR's names or ours)."""
        scheduler_opt = dict(self.opt['train']['scheduler'])
        scheduler_type = scheduler_opt.pop('type')
        scheduler_class = SCHEDULERS.get(scheduler_type) or BASICSR_SCHEDULERS.get(scheduler_type)
        if scheduler_class is None:
            known = ', '.join(sorted({**SCHEDULERS, **BASICSR_SCHEDULERS}))
            raise ValueError(f'train.scheduler.type: unknown scheduler {scheduler_type!r}; known: {known}')
        for optimizer in self.optimizers:
            self.schedulers.append(scheduler_class(optimizer, **scheduler_opt))

    def model_ema(self, decay=0.999):
        """EMA of the network named by ``self.ema_network`` into ``net_ema``: parameters averaged, buffers copied."""
        source = self.get_bare_model(getattr(self, self.ema_network))
        with torch.no_grad():
            ema_params = dict(self.net_ema.named_parameters())
            for name, param in source.named_parameters():
                ema_params[name].mul_(decay).add_(param.detach(), alpha=1 - decay)
            ema_buffers = dict(self.net_ema.named_buffers())
            for name, buffer in source.named_buffers():
                ema_buffers[name].copy_(buffer)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """BasicSR's validation, with every generator restored afterwards: validating (or not, as after a
        resume) never changes what training draws next. With ``val.tf32`` on GPU, inside :func:`tf32_scope`
        (settings restored after).

        BasicSR validates after saving the iteration's state; that state is then saved again with the updated
        best results, so a run resumed from it keeps the same ``best`` checkpoint as an uninterrupted one.
        """
        state = rng_state()
        try:
            with tf32_scope(self.validation_tf32):
                super().validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            set_rng_state(state)
        saved = getattr(self, '_saved_state', None)
        if self.is_train and saved is not None and saved[1] == current_iter:
            self.save_training_state(*saved)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """Load weights of any supported layout into ``net`` with :func:`restorevar_plugin.checkpoints.load_network`."""
        return load_network(self.get_bare_model(net), load_path, strict, param_key or 'params')

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """Save one or several networks as ``{param_key: state_dict}`` into ``models/``, atomically.

        Raises:
            NonFiniteTrainingError: a weight is NaN or infinite (nothing is written, so no ``latest`` or ``best``
                file ever holds one).
        """
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys')
        save_dict = {}
        suffix = 'latest' if current_iter == -1 else current_iter
        for net_, key in zip(nets, keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {name.removeprefix('module.'): value.cpu() for name, value in state_dict.items()}
            bad = [name for name, value in save_dict[key].items()
                   if value.is_floating_point() and not torch.isfinite(value).all()]
            if bad:
                raise NonFiniteTrainingError(
                    f'iteration {self.current_iter}: {net_label} ({key}) has non-finite weights ({len(bad)} tensors, '
                    f'first: {", ".join(bad[:3])}); not saving {net_label}_{suffix}.pth')
        atomic_torch_save(save_dict, Path(self.opt['path']['models']) / f'{net_label}_{suffix}.pth')

    @master_only
    def save_training_state(self, epoch, current_iter):
        """Save optimizers, schedulers, the AMP scaler, RNG states and the best validation results so far to
        ``<iter>.state``, atomically (EMA weights are in the network files of the same iteration)."""
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [optimizer.state_dict() for optimizer in self.optimizers],
            'schedulers': [scheduler.state_dict() for scheduler in self.schedulers],
            'grad_scaler': self.grad_scaler.state_dict(),
            'rng': rng_state(),
            'best_metric_results': plain_best_results(getattr(self, 'best_metric_results', {})),
            'extra': self.extra_training_state(),
            'nonfinite': {'skips': self.nonfinite_skips, 'consecutive': dict(self.consecutive_skips)},
        }
        atomic_torch_save(state, Path(self.opt['path']['training_states']) / f'{current_iter}.state')
        self._saved_state = (epoch, current_iter)

    def resume_training(self, resume_state):
        """Restore optimizers, schedulers, the AMP scaler, RNG states and best validation results from a ``.state``."""
        for kind, objects in (('optimizers', self.optimizers), ('schedulers', self.schedulers)):
            if len(resume_state[kind]) != len(objects):
                raise ValueError(f'resume state holds {len(resume_state[kind])} {kind}, this model has '
                                 f'{len(objects)}: the option file changed since the state was saved')
            for obj, state in zip(objects, resume_state[kind]):
                obj.load_state_dict(state)
        if resume_state.get('grad_scaler'):
            self.grad_scaler.load_state_dict(resume_state['grad_scaler'])
        if resume_state.get('rng'):
            set_rng_state(resume_state['rng'])
        if resume_state.get('best_metric_results'):
            self.best_metric_results = resume_state['best_metric_results']
        self.load_extra_training_state(resume_state.get('extra') or {})
        nonfinite = resume_state.get('nonfinite') or {}
        self.nonfinite_skips = int(nonfinite.get('skips', 0))
        self.consecutive_skips = {int(key): int(value) for key, value in (nonfinite.get('consecutive') or {}).items()}

    def extra_training_state(self):
        """Training state a subclass keeps outside networks, optimizers and schedulers (saved in ``.state``)."""
        return {}

    def load_extra_training_state(self, state):
        """Restore what :meth:`extra_training_state` returned (``{}`` for states saved without it)."""
