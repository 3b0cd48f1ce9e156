"""Time ``basicsr restore``'s two RestoreVAR modes on one photograph: blended tiles vs resize (random weights).

Usage: ``python benchmarks/bench_restore.py [-opt options/demo/restorevar_test.yml] [--side 512] [--batch 16]``

Builds the option file's RestoreVAR pipeline with random weights (``path`` ignored) exactly as ``basicsr restore``
does, takes scikit-image's astronaut resized to ``--side`` pixels, and prints for each mode the tiles per image,
the wall time per image and the time per tile (float32, CPU unless CUDA is available; one warm-up call first).
"""
import argparse
import os
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from skimage import data as skimage_data

from restorevar_plugin.commands.restore import (
    build_inference_model,
    load_options,
    make_restorer,
    read_model_options,
    select_device,
)
from restorevar_plugin.tiling import tile_count

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-opt', default=str(REPO / 'options' / 'demo' / 'restorevar_test.yml'))
    parser.add_argument('--side', type=int, default=512, help='side of the square test photograph (px)')
    parser.add_argument('--batch', type=int, default=16, help='tiles per forward pass')
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(None)
    opt = load_options(read_model_options(os.path.abspath(args.opt)), REPO, device)
    opt['path'] = {}
    model = build_inference_model(opt)
    size = model.fixed_input_size
    photo = cv2.resize(skimage_data.astronaut(), (args.side, args.side), interpolation=cv2.INTER_AREA)
    images = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
    print(f'{opt["model_type"]} at {size}x{size}, photograph {args.side}x{args.side}, {device}, '
          f'{torch.get_num_threads()} thread(s)')
    for resize in (False, True):
        choices = SimpleNamespace(resize=resize, tile=None, overlap=None, batch_size=args.batch)
        restorer, mode = make_restorer(model, choices, None)
        tiles = 1 if resize else tile_count(args.side, args.side, size, restorer.overlap)
        restorer(images)
        start = time.perf_counter()
        restorer(images)
        seconds = time.perf_counter() - start
        print(f'{mode:<60} tiles {tiles:4d}  {seconds:7.2f} s/image  {1000 * seconds / tiles:7.1f} ms/tile')


if __name__ == '__main__':
    main()
