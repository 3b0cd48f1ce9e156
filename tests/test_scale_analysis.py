"""Scale-space analysis (paper Fig. 2): index provenance, PSNR values, k validation, ``basicsr analyze-scales``."""
import csv

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage.metrics import peak_signal_noise_ratio

from helpers.dataset_trees import build_meta_tree
from restorevar_plugin.archs.vqvae_arch import MultiScaleVQVAE
from restorevar_plugin.cli import main
from restorevar_plugin.data.meta import load_dataset_meta
from restorevar_plugin.data.synthetic_degradation_dataset import (
    SyntheticDegradationDataset,
)
from restorevar_plugin.data.transforms import lanczos_resize
from restorevar_plugin.scale_analysis import (
    PSNR_COLUMNS,
    VARIANTS,
    check_coarse_scales,
    default_coarse_scales,
    mean_rows,
    scale_swap_analysis,
)

TINY_VQVAE = dict(vocab_size=64, z_channels=8, ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, patch_nums=[1, 2, 4, 8])
SIZE = 32  # patch_nums[-1] * downsample factor 4


def tiny_vqvae(seed=0):
    torch.manual_seed(seed)
    return MultiScaleVQVAE(**TINY_VQVAE).eval()


def synthetic_pairs(size=SIZE, degradations=('haze', 'low_light')):
    """The val split's chelsea/coffee, each under every degradation: ``(degraded, gt, labels)``, (B, 3, size, size)."""
    dataset = SyntheticDegradationDataset({'phase': 'test', 'split': 'val', 'size': size,
                                           'degradations': list(degradations)})
    items = [dataset[i] for i in range(len(dataset))]
    return (torch.stack([item['lq'] for item in items]), torch.stack([item['gt'] for item in items]),
            [item['degradation'] for item in items])


@pytest.fixture(scope='module')
def seeded_vqvae():
    """A tiny VQVAE whose codebook holds residual vectors of real (degraded and clean) images."""
    net = tiny_vqvae()
    degraded, gt, _ = synthetic_pairs()
    with torch.no_grad():
        latents = net.encode_latent(torch.cat([degraded, gt]) * 2 - 1)
        net.quantize.init_codebook_from_latents(latents, torch.Generator().manual_seed(0))
    return net


def decode(net, indices):
    return (net.decode_latent(net.quantize.indices_to_fhat(indices)) + 1) / 2


def skimage_psnr(pred, gt):
    as_array = lambda image: image.clamp(0, 1).permute(1, 2, 0).numpy()  # noqa: E731
    return peak_signal_noise_ratio(as_array(gt), as_array(pred), data_range=1)


# ------------------------------------------------------------------------------------------- computation
def test_swapped_indices_come_from_the_right_image(seeded_vqvae):
    net = seeded_vqvae
    degraded, gt, _ = synthetic_pairs()
    k = 2
    result = scale_swap_analysis(net, degraded, gt, coarse_scales=k)
    with torch.no_grad():
        degraded_idx, gt_idx = net.img_to_indices(degraded * 2 - 1), net.img_to_indices(gt * 2 - 1)
    # The pairs differ at a coarse and at a fine scale, so a swap in the wrong direction would show.
    assert any(not torch.equal(degraded_idx[s], gt_idx[s]) for s in range(k))
    assert any(not torch.equal(degraded_idx[s], gt_idx[s]) for s in range(k, 4))
    expected = {'degraded_rec': degraded_idx, 'gt_coarse': degraded_idx[:k] + gt_idx[k:],
                'gt_fine': gt_idx[:k] + degraded_idx[k:], 'gt_rec': gt_idx}
    assert result.coarse_scales == k and set(result.indices) == set(VARIANTS)
    for variant, indices in expected.items():
        assert len(result.indices[variant]) == 4
        assert all(torch.equal(got, want) for got, want in zip(result.indices[variant], indices)), variant
        with torch.no_grad():
            torch.testing.assert_close(result.images[variant], decode(net, indices), rtol=0, atol=0)
        assert result.images[variant].shape == (4, 3, SIZE, SIZE)
    grid = result.grid(1)
    assert grid.shape == (3, SIZE, 4 * SIZE)
    for column, variant in enumerate(VARIANTS):
        assert torch.equal(grid[..., column * SIZE:(column + 1) * SIZE], result.images[variant][1])


def test_psnr_values_equal_a_direct_skimage_computation(seeded_vqvae):
    degraded, gt, labels = synthetic_pairs()
    result = scale_swap_analysis(seeded_vqvae, degraded, gt)  # default k: 4 // 2
    assert result.coarse_scales == 2
    assert set(result.psnr) == set(PSNR_COLUMNS)
    for b in range(4):
        assert result.psnr['input'][b] == pytest.approx(skimage_psnr(degraded[b], gt[b]), abs=1e-9)
        for variant in VARIANTS:
            assert result.psnr[variant][b] == pytest.approx(skimage_psnr(result.images[variant][b], gt[b]), abs=1e-9)

    rows = [{'image': str(b), 'degradation': labels[b], **{c: result.psnr[c][b] for c in PSNR_COLUMNS}}
            for b in range(4)]
    means = {row['degradation']: row for row in mean_rows(rows)}
    assert list(means) == ['haze', 'low_light', 'all'] and means['haze']['images'] == 2
    haze = [b for b in range(4) if labels[b] == 'haze']
    for column in PSNR_COLUMNS:
        assert means['haze'][column] == pytest.approx(np.mean([result.psnr[column][b] for b in haze]))
        assert means['all'][column] == pytest.approx(np.mean(result.psnr[column]))


def test_coarse_scales_validation_and_default():
    assert [default_coarse_scales(s) for s in (2, 4, 5, 10)] == [1, 2, 2, 5]
    assert check_coarse_scales(None, (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)) == 5
    assert check_coarse_scales(3, (1, 2, 4, 8)) == 3
    for bad in (0, 4, -1, 1.5, True, '2'):
        with pytest.raises(ValueError, match=r'coarse_scales must be an integer in \[1, 3\]'):
            check_coarse_scales(bad, (1, 2, 4, 8))
    with pytest.raises(ValueError, match='at least 2 scales'):
        check_coarse_scales(None, (8, ))


def test_bad_image_shapes_are_rejected(seeded_vqvae):
    degraded, gt, _ = synthetic_pairs()
    with pytest.raises(ValueError, match=r'degraded must have shape \(B, 3, 32, 32\).*got \(4, 3, 40, 40\)'):
        scale_swap_analysis(seeded_vqvae, torch.rand(4, 3, 40, 40), gt)
    with pytest.raises(ValueError, match='same number of images, got 4 and 3'):
        scale_swap_analysis(seeded_vqvae, degraded, gt[:3])
    with pytest.raises(ValueError, match='coarse_scales'):
        scale_swap_analysis(seeded_vqvae, degraded, gt, coarse_scales=4)


# ---------------------------------------------------------------------------------------------------- CLI
def write_run(root, dataset, analysis, checkpoint='ckpt/vqvae.pth', seed=1):
    """A run root with a random-init tiny VQVAE saved in BasicSR's params layout and an option file."""
    (root / 'ckpt').mkdir(parents=True, exist_ok=True)
    net = tiny_vqvae(seed)
    torch.save({'params': net.state_dict()}, root / 'ckpt' / 'vqvae.pth')
    options = {'name': 'swap', 'network_vqvae': {'type': 'MultiScaleVQVAE', **TINY_VQVAE},
               'path': {'pretrain_network_vqvae': checkpoint}, 'datasets': {'test_1': dataset}, 'analysis': analysis}
    option_file = root / 'analyze.yml'
    option_file.write_text(yaml.safe_dump(options))
    return net, option_file


def analyze(option_file, root, capsys, *extra):
    code = main(['analyze-scales', '-opt', str(option_file), '--root', str(root), '--device', 'cpu', *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path):
    with open(path, newline='', encoding='utf-8') as handle:
        return list(csv.DictReader(handle))


def test_cli_writes_grids_and_a_psnr_table_equal_to_a_recomputation(tmp_path, capsys):
    root = tmp_path / 'run'
    dataset = {'name': 'synth', 'type': 'SyntheticDegradationDataset', 'split': 'val', 'size': 40,
               'degradations': ['haze', 'rain']}
    net, option_file = write_run(root, dataset, {'coarse_scales': 1, 'max_images': 3, 'batch_size': 2})
    code, out, err = analyze(option_file, root, capsys)
    assert code == 0, err
    out_dir = root / 'results' / 'swap' / 'scale_analysis' / 'synth'
    names = ['00000_chelsea_haze_0000', '00002_coffee_haze_0002', '00003_coffee_rain_0003']
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([f'{n}.png' for n in names] + ['psnr.csv',
                                                                                              'summary.md'])
    assert [p.name for p in out_dir.parent.iterdir()] == ['synth']  # no temporary folder left
    grids = {name: cv2.imread(str(out_dir / f'{name}.png')) for name in names}
    assert all(grid.shape == (SIZE, 4 * SIZE, 3) for grid in grids.values())

    rows = read_csv(out_dir / 'psnr.csv')
    assert [(r['image'], r['degradation']) for r in rows] == [
        (names[0], 'haze'), (names[1], 'haze'), (names[2], 'rain'), ('mean', 'haze'), ('mean', 'rain'),
        ('mean', 'all')]
    items = SyntheticDegradationDataset(dict(dataset, phase='test'))
    for row, index in zip(rows, (0, 2, 3)):
        item = items[index]
        resize = lambda image: torch.from_numpy(  # noqa: E731
            lanczos_resize(image.permute(1, 2, 0).numpy(), SIZE, SIZE)).permute(2, 0, 1)
        lq, gt = resize(item['lq']), resize(item['gt'])
        with torch.no_grad():
            lq_idx, gt_idx = net.img_to_indices(lq[None] * 2 - 1), net.img_to_indices(gt[None] * 2 - 1)
            images = {'degraded_rec': decode(net, lq_idx), 'gt_coarse': decode(net, lq_idx[:1] + gt_idx[1:]),
                      'gt_fine': decode(net, gt_idx[:1] + lq_idx[1:]), 'gt_rec': decode(net, gt_idx)}
        assert float(row['input']) == pytest.approx(skimage_psnr(lq, gt), abs=1e-5)
        for variant in VARIANTS:
            assert float(row[variant]) == pytest.approx(skimage_psnr(images[variant][0], gt), abs=1e-5), variant
        panel = grids[row['image']][:, SIZE:2 * SIZE, ::-1].astype(np.float32)  # GT_coarse, BGR -> RGB
        expected = images['gt_coarse'][0].permute(1, 2, 0).numpy() * 255
        assert np.abs(panel - expected).max() <= 0.51
    for mean in rows[3:]:
        members = [r for r in rows[:3] if mean['degradation'] in ('all', r['degradation'])]
        for column in PSNR_COLUMNS:
            assert float(mean[column]) == pytest.approx(np.mean([float(r[column]) for r in members]), abs=1e-5)

    assert '| degradation | images | input | Degraded | GT_coarse | GT_fine | GT |' in out
    assert '| all | 3 |' in out and 'coarse scales [1] | fine scales [2, 4, 8] (k=1)' in out
    assert 'Lanczos-resized 40x40 images to 32x32' in out
    assert (out_dir / 'summary.md').read_text().strip() in out

    (out_dir / 'stale.txt').write_text('from an earlier run')
    code, out, err = analyze(option_file, root, capsys, '--coarse-scales', '3')
    assert code == 0, err
    assert 'coarse scales [1, 2, 4] | fine scales [8] (k=3)' in (out_dir / 'summary.md').read_text()
    assert not (out_dir / 'stale.txt').exists()  # the folder was replaced whole
    assert [p.name for p in out_dir.parent.iterdir()] == ['synth']


def test_cli_missing_checkpoint_names_the_file(tmp_path, capsys):
    root = tmp_path / 'run'
    dataset = {'name': 'synth', 'type': 'SyntheticDegradationDataset', 'size': SIZE}
    _, option_file = write_run(root, dataset, {}, checkpoint='pretrained/vae_ch160v4096z32.pth')
    code, _, err = analyze(option_file, root, capsys)
    assert code == 2
    assert "Checkpoint 'vae_ch160v4096z32.pth' not found" in err
    assert str(root / 'pretrained' / 'vae_ch160v4096z32.pth') in err and 'FoundationVision/var' in err
    assert not (root / 'results').exists()


def test_cli_rejects_a_bad_k_and_a_dataset_without_gt(tmp_path, capsys):
    root = tmp_path / 'run'
    dataset = {'name': 'synth', 'type': 'SyntheticDegradationDataset', 'size': SIZE}
    _, option_file = write_run(root, dataset, {})
    code, _, err = analyze(option_file, root, capsys, '--coarse-scales', '4')
    assert code == 2 and '--coarse-scales must be an integer in [1, 3]' in err

    meta = load_dataset_meta('lhp_test')
    build_meta_tree(meta, str(root / 'data'))
    dataset = {'name': 'lhp', 'type': 'MultiDegradationPairedDataset', 'data_root': 'data', 'meta': ['lhp_test'],
               'transform': 'native'}
    _, option_file = write_run(root, dataset, {'coarse_scales': 2})
    code, _, err = analyze(option_file, root, capsys)
    assert code == 2 and 'datasets.test_1 (lhp): item 0' in err and 'has no GT image' in err
    assert list((root / 'results' / 'swap' / 'scale_analysis').iterdir()) == []
