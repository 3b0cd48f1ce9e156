"""Reading checkpoint files of every layout in use, and the one function that loads a file into a network.

Layouts recognised by :func:`detect_layout`:

* ``basicsr``: ``{'params': ..., 'params_ema': ...}`` written by BasicSR models (and by ours);
* ``lightning``: a PyTorch-Lightning checkpoint, weights under ``state_dict`` with a ``net.`` prefix
  (PromptIR ``model.ckpt``, AWRaCLe ``best.ckpt``);
* ``var_trainer``: VAR / RestoreVAR trainer checkpoints (``ar-ckpt-*.pth``), weights under
  ``trainer.var_wo_ddp``;
* ``flat``: a bare state dict (``vae_ch160v4096z32.pth``, ``var_d16.pth``, ``restorevar.pth``,
  ``vae_restorevar.ckpt``). ``.safetensors`` files are always flat;
* ``torchscript``: a TorchScript archive, such as OpenAI's CLIP files (``ViT-B-32.pt``); its
  parameters and buffers are read without running it, minus the three integer attributes OpenAI's
  archives add (``input_resolution``, ``context_length``, ``vocab_size``).

A ``module.`` prefix left by DistributedDataParallel is removed in every layout.
:func:`load_network` is what models (``PluginBaseModel.load_network``), commands and benchmarks call.

Files read by third-party libraries (LPIPS backbones, MUSIQ, CLIP), which would otherwise download them
at construction time, are found by :func:`resolve_pretrained_file`: an explicit path, or the library's
own cache location under ``torch.hub.get_dir()`` (``$TORCH_HOME/hub``), computed at call time so that
changing ``TORCH_HOME`` takes effect immediately. Nothing is ever downloaded.
"""
import pickle
import zipfile
from pathlib import Path

import torch
from basicsr.utils import get_root_logger

from restorevar_plugin.checkpoints.facts import CHECKPOINTS, checkpoint_for_filename

TORCHSCRIPT_EXTRA_KEYS = ('input_resolution', 'context_length', 'vocab_size')


class CheckpointError(ValueError):
    """A checkpoint or training state cannot be used: corrupt, not a checkpoint, or made for another network."""


def describe_load_error(error):
    """Why :func:`torch.load` (``weights_only=True``) failed, in a few words and without torch's advice to retry
    with unsafe unpickling."""
    if isinstance(error, pickle.UnpicklingError) and 'Unsupported global' in str(error):
        return ('it holds pickled Python objects besides tensors and plain containers, which are never '
                'unpickled here because that can run arbitrary code; re-save its state dict with torch.save')
    if isinstance(error, (zipfile.BadZipFile, EOFError)) or 'zip archive' in str(error):
        return 'empty, truncated or damaged file'
    return 'not a PyTorch checkpoint file'


def resolve_checkpoint(path, root=None):
    """Return ``path`` as an existing :class:`~pathlib.Path`, relative paths taken against ``root``.

    Raises:
        FileNotFoundError: naming the file, the absolute location looked at, and (for published
            files of :data:`~restorevar_plugin.checkpoints.facts.CHECKPOINTS`) where to download it.
    """
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and root is not None:
        candidate = Path(root) / candidate
    if not candidate.is_file():
        info = checkpoint_for_filename(Path(path).name)
        hint = f' {info.where_to_get()}' if info is not None else ''
        raise FileNotFoundError(f'Checkpoint {Path(path).name!r} not found: looked for {candidate.resolve()}.{hint}')
    return candidate


def resolve_pretrained_file(key, path=None):
    """Return the existing weight file for ``key``: ``path`` when given, else the library's cache location.

    Args:
        key (str): A key of :data:`~restorevar_plugin.checkpoints.facts.CHECKPOINTS` with a library cache
            location (``'lpips_alex'``, ``'lpips_vgg'``, ``'musiq'``, ``'clipiqa'``).
        path (str | Path | None): An explicit local file; ``None`` looks in ``$TORCH_HOME/hub/...``.

    Returns:
        Path: The file; nothing is downloaded.

    Raises:
        KeyError: ``key`` is not a library-cached file of the table.
        FileNotFoundError: naming the file, the location looked at, the download URL and the option that
            points at a local copy.
    """
    library_files = sorted(name for name, info in CHECKPOINTS.items() if info.hub_subdir is not None)
    if key not in library_files:
        raise KeyError(f'unknown pretrained file {key!r}; known: {library_files}')
    info = CHECKPOINTS[key]
    try:
        return resolve_checkpoint(info.default_path() if path is None else path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f'{error} It is the {info.description} ({info.filename}), which cannot be downloaded automatically '
            f'here: fetch {info.url} and place it at {info.default_path()} (a folder that follows $TORCH_HOME), '
            f'or pass {info.option}=<local file>.') from None


def _strip_prefix(state_dict, prefix):
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def detect_layout(obj):
    """Name of the checkpoint layout of a loaded object (see the module docstring)."""
    if not isinstance(obj, dict):
        raise TypeError(f'expected a dict-like checkpoint, got {type(obj).__name__}')
    if 'params' in obj or 'params_ema' in obj:
        return 'basicsr'
    if isinstance(obj.get('state_dict'), dict):
        return 'lightning'
    if isinstance(obj.get('trainer'), dict) and 'var_wo_ddp' in obj['trainer']:
        return 'var_trainer'
    if all(isinstance(value, torch.Tensor) for value in obj.values()):
        return 'flat'
    raise ValueError(f'unrecognised checkpoint layout with top-level keys {sorted(obj)[:8]}')


def is_torchscript_archive(path):
    """True when ``path`` is a TorchScript zip archive (it holds a ``code/`` folder), not a pickled checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split('/')[1:2] == ['code'] for name in archive.namelist())


def load_state_dict(path, param_key='params', map_location='cpu', root=None):
    """Load the weights of any supported checkpoint file as a flat state dict.

    Args:
        path (str | Path): The checkpoint file (``.pth``, ``.ckpt`` or ``.safetensors``).
        param_key (str): For the ``basicsr`` layout, ``'params'`` or ``'params_ema'`` (falls back to
            the other when missing).
        map_location: Passed to :func:`torch.load`.
        root (str | Path | None): Base for a relative ``path``.

    Returns:
        tuple[dict[str, Tensor], str]: The state dict and the detected layout name.

    Raises:
        FileNotFoundError: See :func:`resolve_checkpoint`.
        CheckpointError: The file is corrupt, not a torch checkpoint, or of an unknown layout.
    """
    path = resolve_checkpoint(path, root)
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location)), 'flat'
    if is_torchscript_archive(path):
        state_dict = torch.jit.load(str(path), map_location=map_location).state_dict()
        return {key: value for key, value in state_dict.items() if key not in TORCHSCRIPT_EXTRA_KEYS}, 'torchscript'
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle of arbitrary objects, truncated file, not a torch file
        raise CheckpointError(f'checkpoint {path} is corrupt or not a checkpoint ({describe_load_error(error)})') \
            from None
    try:
        layout = detect_layout(obj)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f'checkpoint {path} is not a checkpoint this package reads: {error}') from None
    if layout == 'basicsr':
        key = param_key if param_key in obj else ('params' if 'params' in obj else 'params_ema')
        state_dict = obj[key]
    elif layout == 'lightning':
        state_dict = _strip_prefix(obj['state_dict'], 'net.')
    elif layout == 'var_trainer':
        state_dict = obj['trainer']['var_wo_ddp']
    else:
        state_dict = obj
    return _strip_prefix(dict(state_dict), 'module.'), layout


def strict_load(module, state, path, what=None):
    """``module.load_state_dict(state, strict=True)`` with an error naming the file and the first mismatching keys.

    Args:
        module (nn.Module): The network to fill (bare, not DDP-wrapped).
        state (dict[str, Tensor]): Its full state dict, read from ``path``.
        path (str | Path): The file ``state`` came from (for messages).
        what (str | None): How to name the network in messages (default: its class name).

    Raises:
        CheckpointError: e.g. ``checkpoint X does not fit MultiScaleVQVAE: 3 keys missing from the file (first:
            ...)`` or ``... 1 of another shape (first: a.weight (8, 3) in the file, (16, 3) in the model)``; shapes
            the module's own loading accepts (e.g. a resized buffer it keeps) are not errors.
    """
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    problems = []
    if missing:
        problems.append(f'{len(missing)} keys missing from the file (first: {", ".join(missing[:5])})')
    if unexpected:
        problems.append(f'{len(unexpected)} keys the model does not have (first: {", ".join(unexpected[:5])})')
    if not problems:
        try:
            module.load_state_dict(state, strict=True)
            return
        except RuntimeError as error:  # shapes differ (a module may accept some differences itself)
            reshaped = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in state.items()
                        if tuple(value.shape) != tuple(own[key].shape)]
            listed = ', '.join(f'{key} {stored} in the file, {expected} in the model'
                               for key, stored, expected in reshaped[:3])
            problems.append(f'{len(reshaped)} of another shape (first: {listed})' if reshaped
                            else str(error).strip().splitlines()[-1].strip())
    raise CheckpointError(f'checkpoint {path} does not fit {what or type(module).__name__}: ' + '; '.join(problems)
                          + ' (a checkpoint of another architecture or configuration?)')


def load_network(net, path, strict=True, param_key='params', root=None):
    """Load a checkpoint file of any supported layout into ``net``, logging the layout and what differs.

    Strict loading raises on any missing or unexpected key, and on a tensor of another shape unless the
    network's own ``_load_from_state_dict`` accepts it (the quantizer keeps its code-usage buffer when the
    file has another number of scales, as VAR does; logged). Non-strict loading (BasicSR's
    ``strict_load_*: false``) loads the keys both sides share with the same shape and logs the others.

    Args:
        net (nn.Module): The bare network (not DDP-wrapped).
        path (str | Path): The checkpoint file.
        strict (bool): Require an exact key match.
        param_key (str): ``params`` or ``params_ema`` for the ``basicsr`` layout.
        root (str | Path | None): Base for a relative ``path``.

    Returns:
        dict: ``path``, ``layout``, ``loaded`` (count of tensors taken from the file), and the key lists
        ``missing``, ``unexpected`` (both empty when ``strict``) and ``reshaped`` (kept from the network).

    Raises:
        FileNotFoundError: See :func:`resolve_checkpoint`.
        ValueError: Unreadable file, or (strict) keys or shapes that differ from ``net``.
    """
    state, layout = load_state_dict(path, param_key=param_key or 'params', root=root)
    what = net.__class__.__name__
    logger = get_root_logger()
    logger.info(f'Loading {what} from {path} ({layout} layout, param key {param_key}, strict {strict}).')
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    reshaped = sorted(key for key in set(own) & set(state) if own[key].shape != state[key].shape)
    if strict:
        strict_load(net, state, path, what)
        for key in reshaped:
            logger.info(f'{what}: {key} is {tuple(state[key].shape)} in the file, {tuple(own[key].shape)} in the '
                        f'network; kept the network\'s own')
    else:
        for label, keys in (('missing from the file', missing), ('not in the network', unexpected),
                            ('of another shape (kept the network\'s own)', reshaped)):
            if keys:
                logger.warning(f'{what} keys {label}: {keys}')
        net.load_state_dict({key: value for key, value in state.items() if key in own and key not in reshaped},
                            strict=False)
    return {'path': str(path), 'layout': layout, 'loaded': len(state) - len(unexpected) - len(reshaped),
            'missing': missing, 'unexpected': unexpected, 'reshaped': reshaped}
