"""FLOPs of one RestoreVAR inference per component: our path against the official procedure, same count.

Both are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add) on the
``meta`` device: the count of every step does not depend on the values (the argmax of meta logits gives
placeholder indices of the right shape), it runs in seconds, and on ``meta`` the attention inside
``scaled_dot_product_attention`` is counted too (on CPU FlopCounterMode counts 0 for the CPU flash kernel).
The official procedure is :mod:`official_procedure` (encoder taps, condition K/V recomputed in every block at
every scale, explicit-matmul attention).

Example::

    python benchmarks/flops_inference.py            # 512 px, batch 1
    python benchmarks/flops_inference.py --size 256
"""
import argparse
import contextlib
import sys
from collections import defaultdict
from pathlib import Path

import torch
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)
from restorevar_plugin.archs.refiner_arch import LatentRefinerTransformer
from restorevar_plugin.archs.restorevar_arch import RestoreVARTransformer
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_procedure import official_restore  # noqa: E402
from patch_schedules import PATCH_NUMS  # noqa: E402

STEPS = ('encoder', 'generation', 'refiner', 'decoder')
PAPER_TFLOPS = 1.05  # RestoreVAR's figure in the paper (matches multiply-adds of transformer + refiner)


class FlopMeter:
    """``measure(name)``: a FlopCounterMode around the step, FLOPs summed per step name."""

    def __init__(self):
        self.flops = defaultdict(int)
        self.counters = {}

    @contextlib.contextmanager
    def measure(self, name):
        counter = FlopCounterMode(display=False)
        with counter:
            yield
        self.flops[name] += counter.get_total_flops()
        self.counters[name] = counter


def module_flops(counter, name):
    """Total FLOPs attributed to module path ``name`` (e.g. ``RestoreVARBlock.attn``), all blocks together."""
    return sum(counter.get_flop_counts().get(name, {}).values())


@torch.no_grad()
def our_flops(vqvae, transformer, refiner, image):
    """Per-step FLOPs of our path (``RestoreVARModel.restore``'s calls)."""
    meter = FlopMeter()
    with meter.measure('encoder'):
        cond = vqvae.encode_features(image)
    with meter.measure('generation'):
        generated = transformer.generate(cond, vqvae)
    with meter.measure('refiner'):
        tokens = refiner(rearrange(generated.f_hat, 'b c h w -> b (h w) c'), generated.last_hidden)
    with meter.measure('decoder'):
        vqvae.decode_latent(rearrange(tokens, 'b (h w) c -> b c h w', h=generated.f_hat.shape[-1]))
    return meter


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

    ours = our_flops(vqvae, transformer, refiner, image)
    official = FlopMeter()
    official_restore(vqvae, transformer, refiner, image, timer=official.measure)

    tera = 1e12
    print(f'RestoreVAR inference at {args.size} px, batch {args.batch}; TFLOPs = 2 x multiply-adds '
          f'(FlopCounterMode on meta, attention included)')
    print(f'  {"step":<12} {"ours":>8} {"official":>9} {"ratio":>7}')
    for step in STEPS:
        print(f'  {step:<12} {ours.flops[step] / tera:8.3f} {official.flops[step] / tera:9.3f} '
              f'{ours.flops[step] / official.flops[step]:7.3f}')
    total_ours, total_official = sum(ours.flops.values()), sum(official.flops.values())
    print(f'  {"total":<12} {total_ours / tera:8.3f} {total_official / tera:9.3f} {total_ours / total_official:7.3f}')

    generator = ours.counters['generation']
    print('our generation, 16 blocks together:')
    for label, name in (('self-attention', 'RestoreVARBlock.attn'), ('FFN', 'RestoreVARBlock.ffn'),
                        ('cross-attention (q, attention, out)', 'RestoreVARBlock.cross_attn')):
        print(f'  {label:<36} {module_flops(generator, name) / tera:8.3f} T')
    outside = ours.flops['generation'] - module_flops(generator, 'RestoreVARBlock')
    print(f'  {"outside blocks (condition K/V once,":<36} {outside / tera:8.3f} T')
    print('   head, embeddings, quantizer convs)')

    mine = ours.flops['generation'] + ours.flops['refiner']
    theirs = official.flops['generation'] + official.flops['refiner']
    print(f'transformer + refiner: ours {mine / tera:.3f} T FLOPs ({mine / 2 / tera:.3f} T multiply-adds), official '
          f'{theirs / tera:.3f} T ({theirs / 2 / tera:.3f} T MACs): ratio {mine / theirs:.3f} (target <= 0.70)')
    print(f'paper: {PAPER_TFLOPS} "TFLOPs" for RestoreVAR, which matches the multiply-adds of transformer + refiner of '
          f'the official procedure at 512 px')


if __name__ == '__main__':
    main()
