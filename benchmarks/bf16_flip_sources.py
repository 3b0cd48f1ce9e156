"""Where bf16's greedy-index flips come from: the encoder, the early scales, or every scale on its own.

Same photographs and "trained-scale" random weights as ``precision_quality.py``; greedy indices of next-scale
generation compared per scale with the all-fp32 run, for:

* ``bf16``: encoder and transformer under bf16 autocast (what ``val.precision: bf16`` runs);
* ``fp32 encoder``: the condition features in fp32, the transformer in bf16;
* ``fp32 transformer``: the condition features in bf16, the transformer in fp32;
* ``fp32 encoder + first K scales``: also the condition's keys/values and the first K scales in fp32, the
  later scales in bf16 (the cache of the fp32 scales is rounded to bf16 when bf16 takes over).

The transformer runs on its plain parameters (``F.linear``, autocast's casts) here: this measures rounding,
not speed. Example::

    python benchmarks/bf16_flip_sources.py --size 512 --fp32-scales 5 8    # ~6 min on 2 cores
"""
import argparse
import contextlib
import sys
from pathlib import Path

import torch

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import PATCH_NUMS, build_test_model, model_options  # noqa: E402
from precision_quality import PHOTOS, photographs, trained_scale  # noqa: E402


def bf16_autocast(enabled=True):
    return torch.autocast('cpu', dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def first_scales_in_fp32(transformer, count):
    """Within the context (under bf16 autocast), ``transformer.generate`` embeds the condition and runs its
    first ``count`` scales in fp32 and the later ones in bf16 (condition keys/values and cache rounded)."""
    run_blocks, prepare_condition = transformer._run_blocks, transformer._prepare_condition
    scale = {'next': 0}

    def condition_in_fp32(cond):
        with bf16_autocast(enabled=False):
            return prepare_condition(cond)

    def blocks_by_scale(x, rope, cond_kvs, kv_caches=None, **kwargs):
        current, scale['next'] = scale['next'], scale['next'] + 1
        if current < count:
            with bf16_autocast(enabled=False):
                return run_blocks(x.float(), rope, cond_kvs, kv_caches=kv_caches, **kwargs)
        cond_kvs = [(keys.bfloat16(), values.bfloat16()) for keys, values in cond_kvs]
        for cache in kv_caches or []:
            if cache.keys is not None:
                cache.keys, cache.values = cache.keys.bfloat16(), cache.values.bfloat16()
        return run_blocks(x, rope, cond_kvs, kv_caches=kv_caches, **kwargs)

    transformer._run_blocks, transformer._prepare_condition = blocks_by_scale, condition_in_fp32
    try:
        yield
    finally:
        del transformer._run_blocks, transformer._prepare_condition


@torch.no_grad()
def generated_indices(model, cond, bf16_transformer, fp32_scales=0):
    """Per-scale greedy indices of ``model.net_g.generate`` on the condition features ``cond``."""
    transformer, vqvae = model.net_g, model.net_vqvae
    mixed = first_scales_in_fp32(transformer, fp32_scales) if fp32_scales else contextlib.nullcontext()
    with bf16_autocast(enabled=bf16_transformer), mixed:
        return transformer.generate(cond, vqvae).indices


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=512, choices=sorted(PATCH_NUMS))
    parser.add_argument('--fp32-scales', nargs='*', type=int, default=[5, 8],
                        help='K of the "fp32 encoder + first K scales" rows')
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_test_model(model_options(args.size, torch.device('cpu')))
    trained_scale(model.net_g)
    for network in (model.net_vqvae, model.net_g):
        network.eval()
    images = photographs(args.size)
    with torch.no_grad():
        cond_fp32 = model.net_vqvae.encode_features(images)
        with bf16_autocast():
            cond_bf16 = model.net_vqvae.encode_features(images)
    reference = generated_indices(model, cond_fp32, bf16_transformer=False)
    rows = [('bf16', cond_bf16, True, 0), ('fp32 encoder', cond_fp32, True, 0),
            ('fp32 transformer', cond_bf16, False, 0)]
    rows += [(f'fp32 encoder + first {k} scales', cond_fp32, True, k) for k in args.fp32_scales]
    print(f'{args.size} px, photographs {", ".join(PHOTOS)}, trained-scale random weights, {torch.get_num_threads()} '
          f'threads; greedy indices equal to all-fp32, per scale (sides {model.net_g.patch_nums}) and in all')
    total = sum(indices.numel() for indices in reference)
    for name, cond, bf16_transformer, fp32_scales in rows:
        indices = generated_indices(model, cond, bf16_transformer, fp32_scales)
        per_scale = ' '.join(f'{100 * (a == b).float().mean().item():5.1f}' for a, b in zip(reference, indices))
        same = sum(int((a == b).sum()) for a, b in zip(reference, indices))
        print(f'{name:>30}: {100 * same / total:6.2f}%   {per_scale}', flush=True)


if __name__ == '__main__':
    main()
