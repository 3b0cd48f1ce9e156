"""Load the official RestoreVAR / VAR checkpoint files into our modules, reporting what was done.

* :func:`load_official_restorevar`: ``restorevar.pth`` (594 flat keys: transformer + ``vae_refiner.*``), or a
  stage-1 trainer checkpoint, into :class:`RestoreVARTransformer` (+ :class:`LatentRefinerTransformer`).
  The official buffers (``freqs_cis``, ``freqs_cis_cross``, ``attn_bias_for_masking``, ``lvl_1L``,
  ``lvl_1L_cond``, ``blocks.N.attn.zero_k_bias``) are compared with the values recomputed by
  :meth:`RestoreVARTransformer.official_buffers` and dropped (our model recomputes them; see
  :mod:`restorevar_plugin.archs.restorevar_arch`); everything else loads strictly.
* :func:`load_official_vqvae`: ``vae_ch160v4096z32.pth`` or ``vae_restorevar.ckpt`` into
  :class:`MultiScaleVQVAE`, strictly.

The base VAR initialisation (``var_d16.pth``) is :meth:`RestoreVARTransformer.load_var_pretrained`.
Every function logs and returns a report dict; a missing file raises the ``FileNotFoundError`` of
:func:`restorevar_plugin.weights.resolve_checkpoint` (with the download hint for official files).
"""
import torch
from basicsr.utils import get_root_logger

from restorevar_plugin.weights import load_into, load_state_dict

REFINER_PREFIX = 'vae_refiner.'
# Recomputed floating-point RoPE tables may differ from the stored ones in the last bits of sin / cos.
BUFFER_ATOL = 1e-5


def _matches(stored, expected):
    if stored.shape != expected.shape:
        return False
    if stored.is_floating_point() or stored.is_complex():
        return torch.allclose(stored.to(expected.dtype), expected, rtol=0, atol=BUFFER_ATOL)
    return torch.equal(stored, expected.to(stored.dtype))


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
            :func:`restorevar_plugin.weights.load_state_dict` holding the same keys (e.g. a stage-1
            ``ar-ckpt-*.pth`` without the refiner).
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
    load_into(transformer, transformer_state, path, what='the RestoreVAR transformer')
    skipped = []
    if refiner is not None:
        if not refiner_state:
            raise ValueError(f'{path}: no {REFINER_PREFIX}* keys to load the refiner from (a stage-1 checkpoint?)')
        load_into(refiner, refiner_state, path, what='the latent refiner')
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


def load_official_vqvae(path, vqvae, root=None):
    """Fill a :class:`MultiScaleVQVAE` from ``vae_ch160v4096z32.pth`` or ``vae_restorevar.ckpt`` (strict).

    Args:
        path (str | Path): The VQVAE checkpoint (flat, 324 keys, or any layout of
            :func:`restorevar_plugin.weights.load_state_dict`).
        vqvae (MultiScaleVQVAE): The model to fill.
        root (str | Path | None): Base for a relative ``path``.

    Returns:
        dict: ``path``, ``layout``, ``keys`` (count loaded), ``dropped`` (always empty: nothing is dropped)
        and ``notes`` (e.g. a kept code-usage buffer of another scale count).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Keys or shapes differ from the model.
    """
    state, layout = load_state_dict(path, root=root)
    notes = []
    usage_key = 'quantize.ema_vocab_hit_SV'
    own_usage = vqvae.quantize.ema_vocab_hit_SV
    if usage_key in state and state[usage_key].shape[0] != own_usage.shape[0]:
        notes.append(f'{usage_key}: file has {state[usage_key].shape[0]} scales, model {own_usage.shape[0]}; kept '
                     f'the model\'s buffer (code-usage statistics, unused at inference)')
    load_into(vqvae, state, path, what='the VQVAE')
    report = {'path': str(path), 'layout': layout, 'keys': len(state), 'dropped': [], 'notes': notes}
    logger = get_root_logger()
    logger.info(f'Loaded VQVAE {path} ({layout} layout): {len(state)} tensors, strict.')
    for note in notes:
        logger.info(note)
    return report
