"""Checkpoint files: where each official file comes from, and one loader for every layout in use.

Layouts recognised by :func:`load_state_dict`:

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
"""
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch


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


@dataclass(frozen=True)
class OfficialCheckpoint:
    """Facts about one public checkpoint file (timm-style metadata kept as data)."""

    filename: str
    description: str
    source: str
    url: str
    layout: str
    arch: str


OFFICIAL_CHECKPOINTS = {
    'vae_ch160v4096z32': OfficialCheckpoint(
        filename='vae_ch160v4096z32.pth',
        description='VAR multi-scale VQVAE (ch 160, vocab 4096, z 32), 108,948,355 parameters',
        source='Hugging Face repo FoundationVision/var (main branch)',
        url='https://huggingface.co/FoundationVision/var/resolve/main/vae_ch160v4096z32.pth',
        layout='flat',
        arch='MultiScaleVQVAE'),
    'var_d16': OfficialCheckpoint(
        filename='var_d16.pth',
        description='base VAR-d16 transformer (256 px, with AdaLN); stage-1 initialisation',
        source='Hugging Face repo FoundationVision/var (main branch)',
        url='https://huggingface.co/FoundationVision/var/resolve/main/var_d16.pth',
        layout='flat',
        arch='RestoreVARTransformer'),
    'vae_restorevar': OfficialCheckpoint(
        filename='vae_restorevar.ckpt',
        description='RestoreVAR VQVAE with the decoder fine-tuned on continuous latents (flat dict)',
        source='RestoreVAR checkpoint archive (JHU SharePoint link in github.com/sudraj2002/RestoreVAR README)',
        url='https://github.com/sudraj2002/RestoreVAR#checkpoints',
        layout='flat',
        arch='MultiScaleVQVAE'),
    'restorevar': OfficialCheckpoint(
        filename='restorevar.pth',
        description='RestoreVAR transformer + latent refiner (594 keys, flat)',
        source='RestoreVAR checkpoint archive (JHU SharePoint link in github.com/sudraj2002/RestoreVAR README)',
        url='https://github.com/sudraj2002/RestoreVAR#checkpoints',
        layout='flat',
        arch='RestoreVARTransformer+LatentRefinerTransformer'),
    'promptir': OfficialCheckpoint(
        filename='model.ckpt',
        description='PromptIR trained on its 3 tasks (denoise, derain, dehaze), Lightning checkpoint',
        source='GitHub release v1.0 of va1shn9v/PromptIR (also a Google Drive link in its README)',
        url='https://github.com/va1shn9v/PromptIR/releases/tag/v1.0',
        layout='lightning',
        arch='PromptIR'),
    'awracle': OfficialCheckpoint(
        filename='best.ckpt',
        description='AWRaCLe (with its frozen CLIP ViT-B/32 weights), Lightning checkpoint',
        source='AWRaCLe checkpoint (JHU SharePoint link in github.com/sudraj2002/AWRaCLe README)',
        url='https://github.com/sudraj2002/AWRaCLe#checkpoints',
        layout='lightning',
        arch='AWRaCLe'),
    'clip_vit_b32': OfficialCheckpoint(
        filename='ViT-B-32.pt',
        description="OpenAI CLIP ViT-B/32 (TorchScript), AWRaCLe's frozen context encoder",
        source="OpenAI CLIP (github.com/openai/CLIP, clip.load('ViT-B/32') downloads it)",
        url=('https://openaipublic.azureedge.net/clip/models/'
             '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt'),
        layout='torchscript',
        arch='AWRaCLe.clip'),
}
TORCHSCRIPT_EXTRA_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def _where_to_get(path):
    name = Path(path).name
    for info in OFFICIAL_CHECKPOINTS.values():
        if info.filename == name:
            return f' It is the official {info.description}; get it from {info.source} ({info.url}).'
    return ''


def resolve_checkpoint(path, root=None):
    """Return ``path`` as an existing :class:`~pathlib.Path`, relative paths taken against ``root``.

    Raises:
        FileNotFoundError: naming the file, the absolute location looked at, and (for official
            files) where to download it.
    """
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and root is not None:
        candidate = Path(root) / candidate
    if not candidate.is_file():
        raise FileNotFoundError(f'Checkpoint {Path(path).name!r} not found: looked for {candidate.resolve()}.'
                                f'{_where_to_get(path)}')
    return candidate


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


def load_into(module, state_dict, path, strict=True, what=None):
    """``module.load_state_dict(state_dict, strict)`` with an error naming the file and the first mismatching keys.

    Args:
        module (nn.Module): The network to fill (bare, not DDP-wrapped).
        state_dict (dict[str, Tensor]): Weights read from ``path``.
        path (str | Path): The file, for the message.
        strict (bool): Missing and unexpected keys are errors; a shape mismatch always is.
        what (str | None): How to name the network (default: its class name).

    Raises:
        CheckpointError: e.g. ``checkpoint X does not fit MultiScaleVQVAE: 3 keys missing from the file (first:
            ...)`` or ``... 1 of another shape (first: a.weight (8, 3) in the file, (16, 3) in the model)``; shapes
            the module's own loading accepts (e.g. a resized buffer it keeps) are not errors.
    """
    own = module.state_dict()
    problems = []
    if strict:
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing:
            problems.append(f'{len(missing)} keys missing from the file (first: {", ".join(missing[:5])})')
        if unexpected:
            problems.append(f'{len(unexpected)} keys the model does not have (first: {", ".join(unexpected[:5])})')
    if not problems:
        try:
            module.load_state_dict(state_dict, strict=strict)
            return
        except RuntimeError as error:  # shapes differ (a module may accept some differences itself)
            reshaped = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in state_dict.items()
                        if key in own and tuple(value.shape) != tuple(own[key].shape)]
            listed = ', '.join(f'{key} {stored} in the file, {expected} in the model'
                               for key, stored, expected in reshaped[:3])
            problems.append(f'{len(reshaped)} of another shape (first: {listed})' if reshaped
                            else str(error).strip().splitlines()[-1].strip())
    raise CheckpointError(f'checkpoint {path} does not fit {what or type(module).__name__}: ' + '; '.join(problems)
                          + ' (a checkpoint of another architecture or configuration?)')
