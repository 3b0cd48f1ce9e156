"""FLOPs of one RestoreVAR inference (encoder, generation, refiner, decoder), per component.

Counted with :class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add) on the ``meta``
device: the count of every step does not depend on the values (the argmax of meta logits gives placeholder
indices of the right shape), it runs in seconds, and on ``meta`` the attention inside
``scaled_dot_product_attention`` is counted. On CPU FlopCounterMode counts 0 for it (the CPU flash kernel has
no FLOP formula), so CPU counts such as ``OFFICIAL_512`` below (the official code counted on CPU; its
self-attention uses SDPA, its cross-attention and refiner explicit matmuls) leave out the self-attention core.

Example::

    python benchmarks/flops_inference.py            # 512 px, batch 1
    python benchmarks/flops_inference.py --size 256
"""
import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)
from restorevar_plugin.archs.refiner_arch import LatentRefinerTransformer
from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE

PATCH_NUMS = {256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16), 512: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)}
PAPER_TFLOPS = 1.05  # RestoreVAR's figure in the paper (matches multiply-adds of transformer + refiner)
# The official inference (infer.py: encoder, 10-scale generation, refiner, decoder) at 512 px, random weights, batch 1,
# counted by us with FlopCounterMode on CPU (2 cores), T FLOPs; the self-attention core is not counted on CPU.
OFFICIAL_512 = {'total': 4.474, 'encoder': 0.867, 'blocks': 1.890, 'refiner': 0.116, 'decoder': 1.583}


def counted(function, *args):
    """Run ``function(*args)`` under a FlopCounterMode; return its result and the counter."""
    counter = FlopCounterMode(display=False)
    with counter:
        result = function(*args)
    return result, counter


def module_flops(counter, name):
    """Total FLOPs attributed to module path ``name`` (e.g. ``RestoreVARBlock.attn``), all blocks together."""
    return sum(counter.get_flop_counts().get(name, {}).values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=512, choices=sorted(PATCH_NUMS))
    parser.add_argument('--batch', type=int, default=1)
    args = parser.parse_args()
    patch_nums = PATCH_NUMS[args.size]
    with torch.device('meta'):
        vqvae = MultiScaleVQVAE(patch_nums=patch_nums).eval()
        transformer = RestoreVARTransformer(patch_nums=patch_nums).eval()
        refiner = LatentRefinerTransformer(seq_len=patch_nums[-1]**2, seq_len_cond=transformer.seq_len).eval()
        image = torch.zeros(args.batch, 3, args.size, args.size)

    with torch.no_grad():
        cond, encoder = counted(vqvae.encode_features, image)
        generation, generator = counted(transformer.generate, cond, vqvae)
        tokens = generation.f_hat.flatten(2).transpose(1, 2)
        refined, refining = counted(refiner, tokens, generation.last_hidden)
        _, decoder = counted(vqvae.decode_latent, refined.transpose(1, 2).reshape(generation.f_hat.shape))

    tera = 1e12
    blocks = module_flops(generator, 'RestoreVARBlock')
    self_attn = module_flops(generator, 'RestoreVARBlock.attn')
    ffn = module_flops(generator, 'RestoreVARBlock.ffn')
    cross_attn = module_flops(generator, 'RestoreVARBlock.cross_attn')
    width, depth, grid = transformer.embed_dim, transformer.depth, transformer.grid
    cond_kv = 2 * args.batch * grid**2 * width * 2 * width * depth  # kv_proj of every block, once per image
    # Attention-core FLOPs of self-attention with the KV cache: scale s attends to all tokens up to its end.
    core = sum((end - start) * end for start, end in transformer.scale_spans) * 2 * 2 * width * depth * args.batch
    totals = {
        'encoder': encoder.get_total_flops(),
        'generation': generator.get_total_flops(),
        'refiner': refining.get_total_flops(),
        'decoder': decoder.get_total_flops(),
    }
    total = sum(totals.values())
    print(f'RestoreVAR inference at {args.size} px, batch {args.batch}; FLOPs = 2 x multiply-adds (FlopCounterMode, '
          f'meta device)')
    for name, flops in totals.items():
        print(f'  {name:<12} {flops / tera:8.3f} T')
    print(f'  {"total":<12} {total / tera:8.3f} T')
    print('generation breakdown (16 blocks together):')
    print(f'  self-attention  {self_attn / tera:8.3f} T (of which attention core {core / tera:.3f} T)')
    print(f'  FFN             {ffn / tera:8.3f} T')
    print(f'  cross-attention {cross_attn / tera:8.3f} T (q/out projections + attention; K/V below)')
    print(f'  outside blocks  {(totals["generation"] - blocks) / tera:8.3f} T (condition K/V once per image '
          f'{cond_kv / tera:.3f} T, head, embeddings, quantizer convs)')
    official_style_kv = cond_kv * (len(patch_nums) - 1)
    print(f'the official code recomputes the condition K/V in every block at every scale: '
          f'+{official_style_kv / tera:.3f} T')

    transformer_refiner = totals['generation'] + totals['refiner']
    print(f'transformer + refiner: {transformer_refiner / tera:.3f} T FLOPs = {transformer_refiner / 2 / tera:.3f} T '
          f'multiply-adds (official code counted alike: {(transformer_refiner + official_style_kv) / 2 / tera:.3f} T '
          f'multiply-adds)')
    if args.size == 512:
        core_tera = core / tera
        official_macs_cpu = (OFFICIAL_512['blocks'] + OFFICIAL_512['refiner']) / 2
        print(f'paper: {PAPER_TFLOPS} "TFLOPs" for RestoreVAR; it matches multiply-adds of transformer + refiner of '
              f'the official code: {official_macs_cpu:.3f} T as counted on CPU, '
              f'{official_macs_cpu + core_tera / 2:.3f} T with the self-attention core')
        print(f'official code, CPU count: total {OFFICIAL_512["total"]} T, transformer blocks '
              f'{OFFICIAL_512["blocks"]} T, both without the self-attention core ({core_tera:.3f} T) that '
              f'FlopCounterMode does not count on CPU; counted alike: total {OFFICIAL_512["total"] + core_tera:.3f} T '
              f'(ours {total / tera:.3f} T), blocks {OFFICIAL_512["blocks"] + core_tera:.3f} T (ours blocks + '
              f'condition K/V {(blocks + cond_kv) / tera:.3f} T)')

if __name__ == '__main__':
    main()
