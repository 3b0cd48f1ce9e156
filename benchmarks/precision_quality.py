"""bf16 against fp32 on real photographs: greedy-index agreement per scale and the PSNR between the outputs.

Images: scikit-image's astronaut, chelsea and coffee photographs, resized to the model resolution with
Lanczos as the official pre-processing does, restored as one batch by ``RestoreVARModel.restore`` with
``val.precision: fp32`` and then ``bf16`` (same weights). Weights are random (no checkpoint can be
downloaded here), in the full configuration (VQVAE ch 160, d16 transformer, refiner 384 x 12):

* ``--weights trained-scale`` (default): every Linear of the transformer re-drawn at std ``fan_in ** -0.5`` and
  the cross-attention / start-token gates set to 1, the scale of a trained model: logits spread over O(1),
  and the condition steers the tokens;
* ``--weights official``: the official initialisation (head x 0.02, gates 0), whose logits are nearly flat, so
  argmax ties are decided by rounding: a pessimistic case.

Example::

    python benchmarks/precision_quality.py --size 256
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

import restorevar_plugin  # noqa: F401  (compat shims before basicsr)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import PATCH_NUMS, build_test_model, model_options, psnr, run_variant  # noqa: E402

PHOTOS = ('astronaut', 'chelsea', 'coffee')


def photographs(size):
    """``(3, 3, size, size)`` in [-1, 1]: the photographs resized (Lanczos, aspect not kept, as officially)."""
    images = []
    for name in PHOTOS:
        picture = Image.fromarray(getattr(skdata, name)()).convert('RGB').resize((size, size), Image.LANCZOS)
        images.append(torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1))
    return torch.stack(images) * 2 - 1


def trained_scale(transformer):
    """Re-draw every Linear weight at std ``fan_in ** -0.5`` and open the gates (see the module docstring)."""
    with torch.no_grad():
        for module in transformer.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
        transformer.global_embed_gain.fill_(1.0)
        for block in transformer.blocks:
            block.cross_attn.gain.fill_(1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=256, choices=sorted(PATCH_NUMS))
    parser.add_argument('--weights', default='trained-scale', choices=['trained-scale', 'official'])
    args = parser.parse_args()
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.manual_seed(0)
    model = build_test_model(model_options(args.size, device))
    if args.weights == 'trained-scale':
        trained_scale(model.net_g)
    images = photographs(args.size).to(device)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size} px, {args.weights} random '
          f'weights, photographs {", ".join(PHOTOS)}; load average {os.getloadavg()[0]:.2f}')
    _, exact, exact_indices = run_variant('fp32', model, None, images, device)
    _, reduced, reduced_indices = run_variant('bf16', model, None, images, device)
    print(f'{"scale":>5} {"side":>4} {"equal indices":>14}')
    same_total = count_total = 0
    for scale, (a, b) in enumerate(zip(exact_indices, reduced_indices)):
        same, count = int((a == b).sum()), a.numel()
        same_total, count_total = same_total + same, count_total + count
        print(f'{scale:>5} {model.net_g.patch_nums[scale]:>4} {same:>6}/{count:<6} {100 * same / count:6.2f}%')
    print(f'all scales: {same_total}/{count_total} = {100 * same_total / count_total:.2f}% equal (target >= 99%)')
    for index, name in enumerate(PHOTOS):
        print(f'  {name}: PSNR(fp32 output, bf16 output) = {psnr(exact[index], reduced[index]):.2f} dB, '
              f'max |diff| {(exact[index] - reduced[index]).abs().max().item():.3f} (images in [-1, 1])')
    print(f'load average at the end {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
