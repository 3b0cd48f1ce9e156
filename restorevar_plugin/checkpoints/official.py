"""The official RestoreVAR / VAR transformer checkpoints and how they map onto our modules.

* :func:`load_official_restorevar`: ``restorevar.pth`` (594 flat keys: transformer + ``vae_refiner.*``), or a
  stage-1 trainer checkpoint, into :class:`RestoreVARTransformer` (+ :class:`LatentRefinerTransformer`).
  The official buffers (``freqs_cis``, ``freqs_cis_cross``, ``attn_bias_for_masking``, ``lvl_1L``,
  ``lvl_1L_cond``, ``blocks.N.attn.zero_k_bias``) are compared with the values recomputed by
  :meth:`RestoreVARTransformer.official_buffers` and dropped (our model recomputes them; see
  :mod:`restorevar_plugin.archs.restorevar_arch`); everything else loads strictly.
* :func:`base_var_to_restorevar` (pure) and :func:`load_var_pretrained`: a base VAR checkpoint
  (``var_d16.pth``) as the stage-1 initialisation, as the official ``train.py`` does (it pops the
  AdaLN-era keys and loads the rest non-strictly).

VQVAE files (``vae_ch160v4096z32.pth``, ``vae_restorevar.ckpt``) need no conversion: they load strictly
with :func:`restorevar_plugin.checkpoints.loading.load_network`. Every function logs and returns a report
dict; a missing file raises the ``FileNotFoundError`` of
:func:`~restorevar_plugin.checkpoints.loading.resolve_checkpoint` (with the download hint).
"""
import torch
from basicsr.utils import get_root_logger

from restorevar_plugin.checkpoints.loading import load_state_dict, strict_load

REFINER_PREFIX = 'vae_refiner.'
# Recomputed floating-point RoPE tables may differ from the stored ones in the last bits of sin / cos.
BUFFER_ATOL = 1e-5
# Modules RestoreVAR adds to base VAR (top level, and in every block): fresh after a base-VAR initialisation.
NEW_MODULE_PREFIXES = ('global_embed', 'cond_proj4.', 'word_embed_cond.', 'lvl_embed_cond.')
NEW_BLOCK_MODULE_PREFIX = 'cross_attn.'
# Base-VAR keys with no counterpart in RestoreVAR (AdaLN, absolute positions, recomputable buffers).
BASE_VAR_DROPPED_KEYS = ('pos_start', 'pos_1LC', 'attn_bias_for_masking', 'lvl_1L')


def _matches(stored, expected):
    if stored.shape != expected.shape:
        return False
    if stored.is_floating_point() or stored.is_complex():
        return torch.allclose(stored.to(expected.dtype), expected, rtol=0, atol=BUFFER_ATOL)
    return torch.equal(stored, expected.to(stored.device, stored.dtype))


def _drop_official_buffers(state, transformer, path):
    """Remove the stored official buffers from ``state`` after checking them against recomputed values."""
    dropped = []
    for name, expected in transformer.official_buffers().items():
        if name not in state:
            continue
        stored = state.pop(name)
        if not _matches(stored, expected.to(stored.device)):
            raise ValueError(f'{path}: stored buffer {name} {tuple(stored.shape)} differs from the one recomputed '
                             f'for patch_nums={transformer.patch_nums}, head_dim='
                             f'{transformer.embed_dim // transformer.num_heads}, rope_base={transformer.rope_base} '
                             f'{tuple(expected.shape)}: the checkpoint was made for another configuration')
        dropped.append(name)
    return dropped


def load_official_restorevar(path, transformer, refiner=None, root=None):
    """Fill the RestoreVAR transformer (and the latent refiner) from an official checkpoint file.

    Args:
        path (str | Path): ``restorevar.pth`` (flat, 594 keys) or another layout of
            :func:`~restorevar_plugin.checkpoints.loading.load_state_dict` holding the same keys (e.g. a
            stage-1 ``ar-ckpt-*.pth`` without the refiner).
        transformer (RestoreVARTransformer): Receives every key without the ``vae_refiner.`` prefix.
        refiner (LatentRefinerTransformer | None): Receives the ``vae_refiner.*`` keys (prefix removed);
            None skips them (reported).
        root (str | Path | None): Base for a relative ``path``.

    Returns:
        dict: ``path``, ``layout``, ``transformer_keys`` and ``refiner_keys`` (counts loaded),
        ``dropped_buffers`` (validated and dropped) and ``skipped`` (refiner keys not loaded).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Keys or shapes differ from the models, a stored buffer differs from the recomputed
            one (another configuration), or a refiner was given but the file has no refiner weights.
    """
    state, layout = load_state_dict(path, root=root)
    refiner_state = {key[len(REFINER_PREFIX):]: value for key, value in state.items() if key.startswith(REFINER_PREFIX)}
    transformer_state = {key: value for key, value in state.items() if not key.startswith(REFINER_PREFIX)}
    dropped = _drop_official_buffers(transformer_state, transformer, path)
    strict_load(transformer, transformer_state, path, 'transformer')
    skipped = []
    if refiner is not None:
        if not refiner_state:
            raise ValueError(f'{path}: no {REFINER_PREFIX}* keys to load the refiner from (a stage-1 checkpoint?)')
        strict_load(refiner, refiner_state, path, 'refiner')
    else:
        skipped = sorted(REFINER_PREFIX + key for key in refiner_state)
    report = {
        'path': str(path),
        'layout': layout,
        'transformer_keys': len(transformer_state),
        'refiner_keys': len(refiner_state) if refiner is not None else 0,
        'dropped_buffers': dropped,
        'skipped': skipped,
    }
    logger = get_root_logger()
    logger.info(f'Loaded {path} ({layout} layout): {report["transformer_keys"]} transformer tensors, '
                f'{report["refiner_keys"]} refiner tensors.')
    logger.info(f'Checked against recomputed values and dropped {len(dropped)} official buffers: {dropped}')
    if skipped:
        logger.info(f'Skipped {len(skipped)} refiner tensors (no refiner given).')
    return report


def is_restorevar_only_key(key):
    """True for the keys of modules RestoreVAR adds to base VAR (cross-attention, condition embeddings)."""
    if key.startswith('blocks.'):
        return key.split('.', 2)[2].startswith(NEW_BLOCK_MODULE_PREFIX)
    return key.startswith(NEW_MODULE_PREFIXES)


def is_base_var_only_key(key):
    """True for base-VAR keys RestoreVAR has no counterpart for (AdaLN, absolute positions, buffers)."""
    return key in BASE_VAR_DROPPED_KEYS or 'ada_lin.' in key or key.endswith('attn.zero_k_bias')


def base_var_to_restorevar(state, own):
    """Convert a base VAR state dict into the part of a RestoreVAR transformer state dict it initialises.

    AdaLN (``*ada_lin.*``), absolute positions (``pos_start``, ``pos_1LC``) and recomputable buffers
    (``attn_bias_for_masking``, ``lvl_1L``, ``*.attn.zero_k_bias``) are dropped. If the checkpoint has a
    different number of scales, the first ``min(levels)`` rows of ``lvl_embed`` are copied over the
    model's own and the rest stay as they are.

    Args:
        state (dict[str, Tensor]): The base VAR state dict (``var_d16.pth``).
        own (dict[str, Tensor]): The RestoreVAR transformer's current state dict.

    Returns:
        tuple[dict[str, Tensor], list[str], list[str]]: The tensors to load, the dropped keys and notes.

    Raises:
        ValueError: ``state`` holds keys ``own`` does not know, or tensors of another shape.
    """
    dropped = sorted(key for key in state if is_base_var_only_key(key))
    kept = {key: value for key, value in state.items() if not is_base_var_only_key(key)}
    unknown = sorted(set(kept) - set(own))
    if unknown:
        raise ValueError(f'not a base VAR checkpoint for this model; unknown keys {unknown[:8]}')
    notes = []
    levels = kept.get('lvl_embed.weight')
    if levels is not None and levels.shape[0] != own['lvl_embed.weight'].shape[0]:
        rows = min(levels.shape[0], own['lvl_embed.weight'].shape[0])
        merged = own['lvl_embed.weight'].clone()
        merged[:rows] = levels[:rows]
        kept['lvl_embed.weight'] = merged
        notes.append(f'lvl_embed: checkpoint has {levels.shape[0]} levels, model {own["lvl_embed.weight"].shape[0]}; '
                     f'copied the first {rows} rows, the rest stay freshly initialised')
    mismatched = [f'{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}'
                  for key, value in kept.items() if value.shape != own[key].shape]
    if mismatched:
        raise ValueError(f'tensor shapes differ from this model: {mismatched[:8]}')
    return kept, dropped, notes


def load_var_pretrained(path, transformer, root=None):
    """Initialise a :class:`RestoreVARTransformer` from a base VAR checkpoint (``var_d16.pth``), as stage 1 does.

    The file is converted by :func:`base_var_to_restorevar`; the RestoreVAR-only modules (cross-attention,
    ``global_embed*``, ``cond_proj4``, ``word_embed_cond``, ``lvl_embed_cond``) keep their fresh
    initialisation. The loaded, dropped and fresh key lists are logged.

    Args:
        path (str | Path): The base VAR checkpoint (any layout of
            :func:`~restorevar_plugin.checkpoints.loading.load_state_dict`).
        transformer (RestoreVARTransformer): The bare model to initialise.
        root (str | Path | None): Base for a relative ``path``.

    Returns:
        dict: ``layout``, ``loaded`` / ``dropped`` / ``fresh`` key lists and ``notes``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file holds keys this model does not know, lacks base-VAR weights, or has
            tensors of another shape (e.g. another depth or vocabulary size).
    """
    state, layout = load_state_dict(path, root=root)
    try:
        kept, dropped, notes = base_var_to_restorevar(state, transformer.state_dict())
    except ValueError as error:
        raise ValueError(f'{path}: {error}') from None
    missing = sorted(set(transformer.state_dict()) - set(kept))
    lacking = [key for key in missing if not is_restorevar_only_key(key)]
    if lacking:
        raise ValueError(f'{path}: base VAR weights missing from the file: {lacking[:8]}')
    transformer.load_state_dict(kept, strict=False)
    report = {'layout': layout, 'loaded': sorted(kept), 'dropped': dropped, 'fresh': missing, 'notes': notes}
    logger = get_root_logger()
    logger.info(f'Loaded base VAR weights from {path} ({layout} layout): {len(kept)} tensors.')
    logger.info(f'Dropped {len(dropped)} base-VAR-only keys: {dropped}')
    logger.info(f'Freshly initialised {len(missing)} RestoreVAR keys: {missing}')
    for note in notes:
        logger.info(note)
    return report
