"""``basicsr restore``: sizes, formats, bit depth, gray, alpha, tiling, batching, safety, failures, context, the
demo methods with the shipped checkpoints (``--demo``) and a tiny AWRaCLe with a context pair."""
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from torch import nn

import restorevar_plugin.demo.summary
from helpers.dataset_trees import write_image
from helpers.runs import REPO, load_option_file, write_options
from restorevar_plugin.cli import main
from restorevar_plugin.demo.recipe import CHECKPOINT_DIR, load_manifest
from restorevar_plugin.demo.summary import demo_method_options
from restorevar_plugin.harness import OptionError
from restorevar_plugin.models.restoration_model import RestorationModel

SEEN_BATCHES = []


@ARCH_REGISTRY.register()
class RestoreTestMeanShiftNet(nn.Module):
    """Test arch: identity plus ``strength * (mean of its input - 0.5)``; records each input shape.

    With ``strength`` 0 it is the identity; otherwise every tile gets its own offset, so tiles stitched without
    blending would show a step at their borders.
    """

    def __init__(self, strength=0.0):
        super().__init__()
        self.strength = strength
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        SEEN_BATCHES.append(tuple(x.shape))
        return self.scale * x + self.strength * (x.mean(dim=(1, 2, 3), keepdim=True) - 0.5)


@MODEL_REGISTRY.register()
class RestoreTestContextModel(RestorationModel):
    """Test in-context model: adds ``mean(context_gt) - mean(context_lq)`` to the output of ``net_g``."""

    requires_context = True

    def feed_data(self, data):
        super().feed_data(data)
        self.shift = (data['context_gt'].mean(dim=(1, 2, 3)) - data['context_lq'].mean(dim=(1, 2, 3))).to(self.device)

    def test(self):
        super().test()
        self.output = self.output + self.shift.view(-1, 1, 1, 1)


def restoration_options(strength=0.0, model_type='RestorationModel', **extra):
    return dict({'name': 'restore_test', 'model_type': model_type, 'num_gpu': 0, 'scale': 1,
                 'network_g': {'type': 'RestoreTestMeanShiftNet', 'strength': strength},
                 'path': {'pretrain_network_g': None}, 'val': {'size_multiple': 8}}, **extra)


def restorevar_options():
    """A tiny random-weight RestoreVAR pipeline working at 16 x 16 (token grids 1, 2, 4, 8; downsampling 2)."""
    patch_nums = [1, 2, 4, 8]
    return {
        'name': 'restorevar_restore_test', 'model_type': 'RestoreVARModel', 'num_gpu': 0, 'manual_seed': 0,
        'network_vqvae': {'type': 'MultiScaleVQVAE', 'vocab_size': 64, 'z_channels': 8, 'ch': 32, 'ch_mult': [1, 1],
                          'num_res_blocks': 1, 'patch_nums': patch_nums},
        'network_g': {'type': 'RestoreVARTransformer', 'depth': 1, 'embed_dim': 32, 'num_heads': 2, 'vocab_size': 64,
                      'z_channels': 8, 'patch_nums': patch_nums},
        'network_refiner': {'type': 'LatentRefinerTransformer', 'seq_len': 64, 'seq_len_cond': 85, 'in_dim': 8,
                            'in_dim_cond': 32, 'out_dim': 8, 'dim': 32, 'depth': 1, 'heads': 2, 'mlp_dim': 64},
        'path': {}, 'val': {'use_refiner': True},
    }


def restore(tmp_path, options, *args, random_weights=True):
    """``basicsr restore -opt <options> --root tmp_path ARGS``; the test networks have no weights unless given."""
    option_file = write_options(tmp_path / 'options.yml', options)
    flags = ['--random-weights'] if random_weights else []
    return main(['restore', '-opt', str(option_file), '--root', str(tmp_path), *flags, *map(str, args)])


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def random_image(shape, dtype=np.uint8, seed=0):
    top = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, top, size=shape, dtype=dtype)


def write_mixed_inputs(folder):
    """Odd-sized RGB PNG, gray PNG, 16-bit RGB PNG, 16-bit gray PNG, RGBA PNG, JPEG, BMP, TIFF, WebP, 16-bit TIFF."""
    images = {
        'odd.png': random_image((37, 51, 3), seed=1),
        'sub/gray.png': random_image((30, 21), seed=2),
        'deep.png': random_image((19, 33, 3), np.uint16, seed=3),
        'deep_gray.png': random_image((25, 17), np.uint16, seed=4),
        'alpha.png': random_image((23, 29, 4), seed=5),
        'photo.jpg': random_image((37, 51, 3), seed=6),
        'paint.bmp': random_image((18, 22, 3), seed=7),
        'scan.tif': random_image((20, 26, 3), seed=8),
        'deep_scan.tiff': random_image((21, 14, 3), np.uint16, seed=9),
        'web.webp': random_image((24, 40, 3), seed=10),
    }
    for name, image in images.items():
        write_image(str(folder / name), image)
    return images


def test_identity_method_keeps_size_format_bit_depth_gray_and_alpha(tmp_path):
    images = write_mixed_inputs(tmp_path / 'in')
    assert restore(tmp_path, restoration_options(), '-i', tmp_path / 'in', '-o', tmp_path / 'out') == 0
    for name, image in images.items():
        out = read(tmp_path / 'out' / name)
        assert out is not None, name
        assert (out.shape, out.dtype) == (image.shape, image.dtype), name
        if name.endswith(('.png', '.bmp', '.tif', '.tiff', '.webp')):  # lossless formats: the identity is exact
            np.testing.assert_array_equal(out, image, err_msg=name)
    assert sorted(p.name for p in (tmp_path / 'out').rglob('*')) == sorted(['sub', *(n.split('/')[-1] for n in images)])


def test_tiny_restorevar_keeps_sizes_tiled_and_resized(tmp_path, capsys):
    images = {'odd.png': random_image((37, 51, 3)), 'small.png': random_image((9, 13, 3), seed=1),
              'gray16.png': random_image((20, 18), np.uint16, seed=2), 'alpha.png': random_image((16, 40, 4), seed=3)}
    for name, image in images.items():
        write_image(str(tmp_path / 'in' / name), image)
    assert restore(tmp_path, restorevar_options(), '-i', tmp_path / 'in', '-o', tmp_path / 'tiled',
                   '--batch-size', 3) == 0
    assert 'RestoreVARModel: 16x16 tiles, overlap 8 px' in capsys.readouterr().out
    assert restore(tmp_path, restorevar_options(), '-i', tmp_path / 'in', '-o', tmp_path / 'resized', '--resize') == 0
    assert 'resized to 16x16 and back' in capsys.readouterr().out
    for folder in ('tiled', 'resized'):
        for name, image in images.items():
            out = read(tmp_path / folder / name)
            assert (out.shape, out.dtype) == (image.shape, image.dtype), (folder, name)
        np.testing.assert_array_equal(read(tmp_path / folder / 'alpha.png')[..., 3], images['alpha.png'][..., 3])


def test_tiles_blend_without_a_visible_seam_on_a_gradient(tmp_path):
    width = 192
    gradient = np.round(np.linspace(0, 65535, width)).astype(np.uint16)
    write_image(str(tmp_path / 'in' / 'gradient.png'), np.repeat(np.tile(gradient, (40, 1))[..., None], 3, axis=2))
    own_step = np.abs(np.diff(gradient.astype(np.float64))).max() / 65535
    options = restoration_options(strength=0.25)
    for overlap, folder in ((16, 'blended'), (0, 'cut'), (None, 'default')):
        overlap_args = () if overlap is None else ('--overlap', overlap)
        assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', tmp_path / folder, '--tile', 64,
                       *overlap_args) == 0
    steps = {folder: np.abs(np.diff(read(tmp_path / folder / 'gradient.png').astype(np.float64) / 65535,
                                    axis=1)).max() for folder in ('blended', 'cut', 'default')}
    # stated bound: at most 2/255 more than the gradient's own step; without blending the borders jump ~21/255
    assert steps['blended'] <= own_step + 2 / 255
    assert steps['cut'] > own_step + 10 / 255
    # the default overlap (tile / 2 = 32 px) has ramps twice as wide as 16 px: a clearly smaller excess step
    assert steps['default'] - own_step <= 0.7 * (steps['blended'] - own_step)


def test_progress_bars_count_images_and_tiles(tmp_path, capsys):
    write_image(str(tmp_path / 'in' / 'wide.png'), random_image((20, 40, 3)))
    write_image(str(tmp_path / 'in' / 'small.png'), random_image((8, 8, 3)))
    assert restore(tmp_path, restoration_options(), '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--tile', 16,
                   '--overlap', 4) == 0
    bars = capsys.readouterr().err
    assert '2/2 [' in bars and '0/6 [' in bars  # 2 images; 2 x 3 tiles of 16 px for the 20 x 40 image
    assert bars.count('tiles:') == 1  # no tile bar for the one-tile image


def test_same_size_images_are_batched(tmp_path):
    for index in range(3):
        write_image(str(tmp_path / 'in' / f'same{index}.png'), random_image((24, 24, 3), seed=index))
    write_image(str(tmp_path / 'in' / 'other.png'), random_image((16, 24, 3)))
    SEEN_BATCHES.clear()
    assert restore(tmp_path, restoration_options(), '-i', tmp_path / 'in', '-o', tmp_path / 'out',
                   '--batch-size', 2) == 0
    assert sorted(SEEN_BATCHES) == [(1, 3, 16, 24), (1, 3, 24, 24), (2, 3, 24, 24)]


def test_refuses_to_write_over_its_input(tmp_path, capsys):
    image = random_image((16, 16, 3))
    path = write_image(str(tmp_path / 'in' / 'a.png'), image)
    before = os.stat(path).st_mtime_ns
    options = restoration_options()
    for output in (tmp_path / 'in', tmp_path / 'in' / '.', tmp_path / 'out' / '..' / 'in'):
        assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', output) == 2
        assert 'restore never writes over its inputs' in capsys.readouterr().err
    assert restore(tmp_path, options, '-i', path, '-o', path) == 2
    assert 'restore never writes over its inputs' in capsys.readouterr().err
    assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', path) == 2
    assert 'the output must be one' in capsys.readouterr().err
    assert restore(tmp_path, options, '-i', path, '-o', tmp_path / 'in') == 2
    assert 'would replace an input file' in capsys.readouterr().err
    os.link(path, tmp_path / 'linked.png')
    assert restore(tmp_path, options, '-i', path, '-o', tmp_path / 'linked.png') == 2
    assert os.stat(path).st_mtime_ns == before and sorted(os.listdir(tmp_path / 'in')) == ['a.png']
    np.testing.assert_array_equal(read(path), image)


def test_a_corrupt_file_is_reported_and_the_others_written(tmp_path, capsys):
    for index in range(3):
        write_image(str(tmp_path / 'in' / f'good{index}.png'), random_image((16, 20, 3), seed=index))
    good = (tmp_path / 'in' / 'good0.png').read_bytes()
    (tmp_path / 'in' / 'broken.png').write_bytes(good[:len(good) // 2])
    (tmp_path / 'in' / 'empty.jpg').write_bytes(b'')
    assert restore(tmp_path, restoration_options(), '-i', tmp_path / 'in', '-o', tmp_path / 'out',
                   '--batch-size', 4) == 1
    captured = capsys.readouterr()
    assert 'broken.png' in captured.err and 'empty.jpg' in captured.err and '2 image(s) failed' in captured.err
    assert 'restored 3 of 5 image(s)' in captured.out
    assert sorted(os.listdir(tmp_path / 'out')) == ['good0.png', 'good1.png', 'good2.png']


def test_an_rgba_image_named_as_a_jpeg_output_is_reported_not_written_without_alpha(tmp_path, capsys):
    write_image(str(tmp_path / 'alpha.png'), random_image((12, 14, 4), seed=11))
    SEEN_BATCHES.clear()
    assert restore(tmp_path, restoration_options(), '-i', tmp_path / 'alpha.png', '-o', tmp_path / 'out.jpg') == 1
    err = capsys.readouterr().err
    assert 'alpha.png' in err and 'cannot hold the alpha channel' in err and '1 image(s) failed' in err
    assert not (tmp_path / 'out.jpg').exists()
    assert SEEN_BATCHES == []  # refused before restoring, not after


def test_in_context_pair_reaches_the_model(tmp_path, capsys):
    write_image(str(tmp_path / 'in' / 'query.png'), np.full((12, 12, 3), 100, np.uint8))
    write_image(str(tmp_path / 'ctx_lq.png'), np.full((20, 20, 3), 50, np.uint8))
    write_image(str(tmp_path / 'ctx_gt.png'), np.full((20, 20, 3), 80, np.uint8))
    options = restoration_options(model_type='RestoreTestContextModel')
    assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', tmp_path / 'out') == 2
    assert 'give --context-lq and --context-gt' in capsys.readouterr().err
    assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--context-lq', 'ctx_lq.png',
                   '--context-gt', 'ctx_gt.png') == 0
    assert np.all(read(tmp_path / 'out' / 'query.png') == 130)
    with_val_context = dict(options, val={'context': {'lq': 'ctx_gt.png', 'gt': 'ctx_lq.png'}})
    assert restore(tmp_path, with_val_context, '-i', tmp_path / 'in', '-o', tmp_path / 'out2') == 0
    assert np.all(read(tmp_path / 'out2' / 'query.png') == 70)


def test_option_and_argument_errors(tmp_path, capsys):
    write_image(str(tmp_path / 'in' / 'a.png'), random_image((16, 16, 3)))
    args = ('-i', tmp_path / 'in', '-o', tmp_path / 'out')
    assert restore(tmp_path, restoration_options(), *args, '--resize') == 2
    assert 'has no fixed input size' in capsys.readouterr().err
    assert restore(tmp_path, restoration_options(), *args, '--tile', 8, '--overlap', 8) == 2
    assert '0 <= --overlap < --tile' in capsys.readouterr().err
    missing = dict(restoration_options(), path={'pretrain_network_g': 'weights/none.pth'})
    assert restore(tmp_path, missing, *args) == 2
    assert 'none.pth' in capsys.readouterr().err
    assert restore(tmp_path, restoration_options(), *args, random_weights=False) == 2
    error = capsys.readouterr().err
    assert 'path.pretrain_network_g not set' in error and '--random-weights' in error
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'experiments').exists()
    assert not (tmp_path / 'results').exists()


def shipped_files(name):
    """The shipped checkpoint files the demo method ``name`` loads (its ``path.pretrain_*``)."""
    opt = demo_method_options(name)
    return [Path(value) for key, value in opt['path'].items() if key.startswith('pretrain_') and value]


def test_demo_methods_restore_out_of_the_box_with_the_shipped_checkpoints(tmp_path, capsys):
    vqvae = load_option_file(CHECKPOINT_DIR.parent / 'options' / 'restorevar_test.yml')['network_vqvae']
    side = build_network(dict(vqvae)).image_size  # the demo RestoreVAR's resolution R, from its option file
    images = {'photo.png': random_image((side + side // 2 + 3, 2 * side + 5, 3)),
              'scan.png': random_image((side + 1, side // 2 + 1), np.uint16, seed=1)}
    for name, image in images.items():
        write_image(str(tmp_path / 'in' / name), image)
    outputs = {}
    for method in ('restorevar', 'restorevar_w_o_refiner', 'promptir'):
        assert main(['restore', '--demo', method, '-i', str(tmp_path / 'in'), '-o', str(tmp_path / method)]) == 0
        printed = capsys.readouterr().out
        assert (f'{side}x{side} tiles' in printed) == method.startswith('restorevar'), printed
        files = shipped_files(method)
        assert files and all(path.parent == CHECKPOINT_DIR.resolve() and path.name in load_manifest()['files']
                              and str(path) in printed for path in files)
        for name, image in images.items():
            out = read(tmp_path / method / name)
            assert (out.shape, out.dtype) == (image.shape, image.dtype), (method, name)
        outputs[method] = read(tmp_path / method / 'photo.png').astype(np.float64)
        assert np.abs(outputs[method] - images['photo.png']).mean() > 1  # the network changed the image
    assert np.abs(outputs['restorevar'] - outputs['restorevar_w_o_refiner']).mean() > 0.1  # the refiner is used


def test_demo_method_with_a_missing_shipped_file_names_it_and_writes_nothing(tmp_path, monkeypatch, capsys):
    missing = shipped_files('restorevar')[-1].name
    copies = tmp_path / 'checkpoints'
    copies.mkdir()
    for name in load_manifest()['files']:
        if name != missing:
            shutil.copy(CHECKPOINT_DIR / name, copies / name)
    with pytest.raises(FileNotFoundError, match=f'{copies.resolve() / missing}: missing'):
        demo_method_options('restorevar', copies)
    assert Path(demo_method_options('promptir', copies)['path']['pretrain_network_g']).parent == copies.resolve()
    with pytest.raises(OptionError, match='the demo methods are restorevar, restorevar_w_o_refiner, promptir'):
        demo_method_options('restorevar_tiny', copies)
    write_image(str(tmp_path / 'in' / 'a.png'), random_image((16, 16, 3)))
    monkeypatch.setattr(restorevar_plugin.demo.summary, 'CHECKPOINT_DIR', copies)
    assert main(['restore', '--demo', 'restorevar', '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'out')]) == 2
    error = capsys.readouterr().err
    assert missing in error and 'reinstall the package' in error
    assert not (tmp_path / 'out').exists()


def test_tiny_awracle_restores_with_a_context_pair(tmp_path, capsys):
    options = dict(load_option_file(REPO / 'options' / 'demo' / 'awracle_test.yml'), path={}, val={})
    options['network_g'] = json.loads(json.dumps(options.pop('network_g')))  # plain dicts for the YAML writer
    options.pop('datasets')
    query = random_image((37, 45, 3))
    write_image(str(tmp_path / 'in' / 'query.png'), query)
    write_image(str(tmp_path / 'lq.png'), random_image((20, 28, 3), seed=1))
    for index, shade in enumerate((40, 220)):
        write_image(str(tmp_path / f'gt{index}.png'), np.full((24, 24, 3), shade, np.uint8))
        assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', tmp_path / f'out{index}', '--context-lq',
                       'lq.png', '--context-gt', f'gt{index}.png') == 0
        assert read(tmp_path / f'out{index}' / 'query.png').shape == query.shape
    assert not np.array_equal(read(tmp_path / 'out0' / 'query.png'), read(tmp_path / 'out1' / 'query.png'))
    assert restore(tmp_path, options, '-i', tmp_path / 'in', '-o', tmp_path / 'out2', '--context-lq', 'lq.png',
                   '--context-gt', 'absent.png') == 2
    assert 'absent.png' in capsys.readouterr().err and not (tmp_path / 'out2').exists()
