"""The one evaluation path: float metrics equal scikit-image, protocols, skipped and n/a images, sharding."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.utils import tensor2img
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from spawned_ranks import run_on_ranks
from torch.utils.data import DataLoader, Dataset

from helpers.runs import (
    REPO,
    run_cli,
    tiny_restoration_options,
    write_options,
    write_paired_folders,
)
from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.evaluation import (
    configured_metrics,
    evaluate_dataset,
    read_metrics_csv,
    resolve_metrics,
    score_image,
    write_metrics_csv,
    write_metrics_markdown,
)
from restorevar_plugin.evaluation.scoring import applicable_metrics
from restorevar_plugin.metrics.protocols import PROTOCOLS
from restorevar_plugin.metrics.skimage_metric import calculate_psnr_skimage

PROMPTIR = PROTOCOLS['promptir']


def restoration_model(seed=0):
    """A random-init tiny ``RestorationModel`` (RRDBNet) for testing on the CPU."""
    opt = tiny_restoration_options('evaluation')
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = {'pretrain_network_g': None, 'visualization': 'unused', 'results_root': 'unused'}
    torch.manual_seed(seed)
    return build_model(opt)


def paired_dataset(root):
    """BasicSR's ``PairedImageDataset`` over ``root/gt`` and ``root/lq`` in validation mode."""
    return build_dataset({'name': 'toy', 'type': 'PairedImageDataset', 'phase': 'val', 'scale': 1,
                          'dataroot_gt': str(root / 'gt'), 'dataroot_lq': str(root / 'lq'),
                          'io_backend': {'type': 'disk'}, 'filename_tmpl': '{}'})


def test_psnr_ssim_are_scikit_image_on_the_float_outputs(toy_root):
    model, dataset = restoration_model(), paired_dataset(toy_root / 'data')
    evaluation = evaluate_dataset(model, DataLoader(dataset, batch_size=1), PROMPTIR, progress=False)
    assert [row['image'] for row in evaluation.rows] == [Path(p['lq_path']).stem for p in dataset.paths]
    for index, row in enumerate(evaluation.rows):
        sample = dataset[index]
        with torch.no_grad():
            output = model.net_g(sample['lq'][None])[0].clamp(0, 1).permute(1, 2, 0).numpy()
        gt = sample['gt'].permute(1, 2, 0).numpy()
        assert row['psnr'] == pytest.approx(peak_signal_noise_ratio(gt, output, data_range=1), abs=1e-6)
        assert row['ssim'] == pytest.approx(structural_similarity(gt, output, data_range=1, channel_axis=2), abs=1e-6)
    assert evaluation.means['psnr'] == pytest.approx(np.mean([row['psnr'] for row in evaluation.rows]))
    assert evaluation.counts == {'psnr': 6, 'ssim': 6} and evaluation.skipped == []
    assert set(evaluation.timing_ms) == {'network'}

    batched = evaluate_dataset(model, DataLoader(dataset, batch_size=4), PROMPTIR, progress=False)
    for row, batched_row in zip(evaluation.rows, batched.rows):
        assert batched_row['image'] == row['image']
        assert batched_row['psnr'] == pytest.approx(row['psnr'], abs=1e-4)


def test_float_scores_differ_from_the_8_bit_ones_at_high_psnr():
    gt = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    pred = (gt + 0.002 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    scores = score_image(PROMPTIR.metric_options(), pred, gt, 'x')
    expected = peak_signal_noise_ratio(gt.permute(1, 2, 0).numpy(), pred.permute(1, 2, 0).numpy(), data_range=1)
    assert scores['psnr'] == pytest.approx(expected, abs=1e-6)
    assert abs(scores['psnr'] - calculate_psnr_skimage(tensor2img(pred), tensor2img(gt))) > 0.1


def test_protocols_give_the_metric_options():
    protocol, extra = resolve_metrics({'protocol': 'restorevar_paper'})
    assert extra == {} and protocol.changes == ''
    assert list(applicable_metrics(protocol, extra, has_gt=True)) == ['psnr', 'ssim', 'lpips']
    assert list(applicable_metrics(protocol, extra, has_gt=False)) == ['musiq', 'clipiqa']

    protocol, extra = resolve_metrics({'protocol': 'restorevar_paper', 'metrics': {
        'lpips': None, 'ssim': {'type': 'calculate_ssim', 'crop_border': 0}, 'niqe': {'type': 'calculate_niqe',
                                                                                     'better': 'lower'}}})
    assert list(applicable_metrics(protocol, extra, has_gt=True)) == ['psnr', 'ssim', 'niqe']
    assert list(applicable_metrics(protocol, extra, has_gt=False)) == ['musiq', 'clipiqa', 'niqe']
    assert extra['ssim']['better'] == 'higher' and extra['niqe']['better'] == 'lower'
    line = protocol.describe()
    assert line.startswith('Protocol restorevar_paper') and 'lpips removed' in line
    assert 'ssim replaced by calculate_ssim(crop_border=0)' in line and 'niqe added: calculate_niqe()' in line

    assert configured_metrics({'protocol': 'promptir', 'metrics': {'niqe': {'type': 'calculate_niqe'}}}) == {
        'psnr': {'type': 'calculate_psnr_skimage', 'better': 'higher'},
        'ssim': {'type': 'calculate_ssim_skimage', 'better': 'higher'},
        'niqe': {'type': 'calculate_niqe', 'better': 'higher'}}

    custom, extra = resolve_metrics({'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}})
    assert custom.name == 'custom' and list(extra) == ['psnr'] and 'psnr added' in custom.describe()

    with pytest.raises(ValueError, match="unknown protocol 'promptr'.*Did you mean promptir"):
        resolve_metrics({'protocol': 'promptr'})
    with pytest.raises(ValueError, match="val.metrics.niqe: ~ removes a metric of the protocol"):
        resolve_metrics({'protocol': 'promptir', 'metrics': {'niqe': None}})
    with pytest.raises(ValueError, match='val.metrics.psnr: expected a mapping'):
        resolve_metrics({'metrics': {'psnr': 'calculate_psnr'}})


def test_metric_failures_are_n_a_and_left_out_of_the_mean(caplog):
    flat = torch.full((3, 128, 128), 0.5)
    assert score_image({'niqe': {'type': 'calculate_niqe', 'crop_border': 0}}, flat, None, 'flat.png') == {'niqe': None}
    assert 'flat.png: niqe is n/a (LinAlgError: SVD did not converge)' in caplog.text
    thin = torch.rand(3, 6, 40)
    assert score_image({'ssim': {'type': 'calculate_ssim', 'crop_border': 0}}, thin, thin * 0.9, 'thin.png') \
        == {'ssim': None}
    assert 'thin.png: ssim is n/a (the value is nan)' in caplog.text


@pytest.fixture
def faulty_root(tmp_path):
    """Three good 48-px pairs, a 4-px high pair (too small for SSIM's 7x7 window) and a pair whose input is not an
    image."""
    root = tmp_path / 'faulty'
    write_paired_folders(root, count=3)
    thin = (np.random.default_rng(0).random((4, 48, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(root / 'gt' / '0003.png'), thin)
    cv2.imwrite(str(root / 'lq' / '0003.png'), thin[::-1])
    cv2.imwrite(str(root / 'gt' / '0004.png'), thin)
    (root / 'lq' / '0004.png').write_bytes(b'not an image')
    return root


def test_unreadable_images_are_skipped_and_unscorable_ones_counted(faulty_root, tmp_path, caplog):
    model, dataset = restoration_model(), paired_dataset(faulty_root)
    evaluation = evaluate_dataset(model, DataLoader(dataset, batch_size=2), PROMPTIR, progress=False)
    assert sorted(row['image'] for row in evaluation.rows) == ['0000', '0001', '0002', '0003']
    assert len(evaluation.skipped) == 1
    name, reason = evaluation.skipped[0]
    assert name.endswith('lq/0004.png') and reason.startswith('cannot be read: ')
    assert f'skipped {name}' in caplog.text
    assert evaluation.counts == {'psnr': 4, 'ssim': 3} and evaluation.not_scored() == {'psnr': 0, 'ssim': 1}
    thin = next(row for row in evaluation.rows if row['image'] == '0003')
    assert thin['ssim'] is None and '0003: ssim is n/a (ValueError: win_size exceeds image extent' in caplog.text
    scored = [row['ssim'] for row in evaluation.rows if row['ssim'] is not None]
    assert evaluation.means['ssim'] == pytest.approx(sum(scored) / 3)

    write_metrics_csv(evaluation, tmp_path / 'toy.csv')
    write_metrics_markdown(evaluation, tmp_path / 'toy.md')
    csv_text, markdown = (tmp_path / 'toy.csv').read_text(), (tmp_path / 'toy.md').read_text()
    rows = read_metrics_csv(tmp_path / 'toy.csv')
    assert [row['image'] for row in rows][-1] == 'mean' and len(rows) == 5
    assert next(row for row in rows if row['image'] == '0003')['ssim'] == 'n/a'
    assert float(rows[-1]['ssim']) == pytest.approx(evaluation.means['ssim'], rel=1e-5)
    assert '# 4 images scored, 1 skipped\n' in csv_text and '| 4 | 1 |' in markdown
    for text in (csv_text, markdown):
        assert 'n/a (could not be computed, left out of the mean): ssim on 1 image' in text
        assert PROMPTIR.describe() in text and 'lq/0004.png: cannot be read' in text
    assert not list(tmp_path.glob('.*.tmp'))

    with pytest.raises(AttributeError):
        evaluate_dataset(model, DataLoader(dataset, batch_size=2), PROMPTIR, strict=True, progress=False)


def test_a_set_where_nothing_can_be_read_stops(faulty_root):
    dataset = paired_dataset(faulty_root)
    del dataset.opt['scale']  # a configuration error: every item raises KeyError
    with pytest.raises(RuntimeError, match=r"dataset toy: none of its 5 images could be read or restored.*KeyError"):
        evaluate_dataset(restoration_model(), DataLoader(dataset, batch_size=2), PROMPTIR, progress=False)


class SequenceFrames(Dataset):
    """Frames ``seq<k>/0001.png`` ... of several sequence folders (names repeat across folders), read with the
    package's reader; ``seq3/0001.png`` of the LQ side is not an image."""

    def __init__(self, root):
        self.opt = {'name': 'frames'}
        self.reader = ImageReader()
        self.items = sorted((root / 'lq').glob('*/*.png'))
        self.root = root

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        lq_path = self.items[index]
        gt_path = self.root / 'gt' / lq_path.relative_to(self.root / 'lq')
        as_tensor = [torch.from_numpy(self.reader.read(str(path))).permute(2, 0, 1) for path in (lq_path, gt_path)]
        return {'lq': as_tensor[0], 'gt': as_tensor[1], 'lq_path': str(lq_path), 'gt_path': str(gt_path)}


def write_sequences(root):
    rng = np.random.default_rng(0)
    for sequence in ('seq1', 'seq2', 'seq3'):
        for side in ('gt', 'lq'):
            (root / side / sequence).mkdir(parents=True)
        for frame in range(1, 4 if sequence != 'seq3' else 2):
            image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
            cv2.imwrite(str(root / 'gt' / sequence / f'{frame:04d}.png'), image)
            cv2.imwrite(str(root / 'lq' / sequence / f'{frame:04d}.png'), image // 2)
    (root / 'lq' / 'seq3' / '0001.png').write_bytes(b'broken')


def evaluate_frames(root):
    """Evaluate :class:`SequenceFrames` with a seeded tiny model; return the rows without timings, the skips and
    the inputs this process restored."""
    model = restoration_model()
    restored = []
    feed_data = model.feed_data

    def recording_feed_data(data):
        restored.extend(Path(path).relative_to(root).as_posix() for path in data['lq_path'])
        feed_data(data)

    model.feed_data = recording_feed_data
    evaluation = evaluate_dataset(model, DataLoader(SequenceFrames(root), batch_size=2), PROMPTIR, progress=False)
    rows = [{key: value for key, value in row.items() if key != 'time_s'} for row in evaluation.rows]
    skipped = [(name, reason.replace(str(root), '<root>')) for name, reason in evaluation.skipped]
    return {'rows': rows, 'skipped': skipped, 'restored': restored, 'means': evaluation.means}


def test_distributed_evaluation_is_sharded_and_gathers_the_single_process_rows(tmp_path):
    root = tmp_path / 'frames'
    write_sequences(root)
    single = evaluate_frames(root)
    assert [row['image'] for row in single['rows']] == ['0001', '0002', '0003', 'seq2_0001', 'seq2_0002',
                                                        'seq2_0003']
    # The dataset does not list its files: the skip is named by its index, the reader's error names the file.
    assert single['skipped'] == [('item 6', 'cannot be read: ImageReadError: <root>/lq/seq3/0001.png: cannot be '
                                            'decoded as an image (unreadable, truncated or not an image file)')]

    ranks = run_on_ranks(evaluate_frames, (root,), tmp_path)
    for result in ranks:
        assert result['skipped'] == single['skipped']
        assert [row['image'] for row in result['rows']] == [row['image'] for row in single['rows']]
        for row, single_row in zip(result['rows'], single['rows']):  # other batch compositions: float rounding only
            assert [row['psnr'], row['ssim']] == pytest.approx([single_row['psnr'], single_row['ssim']], rel=1e-6)
        assert result['means'] == pytest.approx(single['means'])
    items = sorted(path.relative_to(root).as_posix() for path in (root / 'lq').glob('*/*.png'))
    assert ranks[0]['restored'] == [item for item in items[0::2] if 'seq3' not in item]
    assert ranks[1]['restored'] == items[1::2]


def restorevar_test_options():
    """The demo test option file shrunk to 3 scales, random-init networks, on the toy folders in batches of 2."""
    with open(REPO / 'options' / 'demo' / 'restorevar_test.yml', encoding='utf-8') as handle:
        opt = yaml.safe_load(handle)
    for key in ('network_vqvae', 'network_g'):
        opt[key]['patch_nums'] = [1, 2, 4]
    opt['network_refiner'].update(seq_len=16, seq_len_cond=21)
    opt.update(path={}, scale=1)
    return opt


@pytest.mark.parametrize('model_type', ['RestoreVARModel', 'RestorationModel'])
def test_basicsr_test_writes_the_same_tables_and_grids_for_every_model(tmp_path, toy_root, model_type):
    if model_type == 'RestoreVARModel':
        opt = restorevar_test_options()
    else:
        opt = tiny_restoration_options('toy')
        del opt['train']
        opt['path'] = {}
    opt['name'] = f'eval_{model_type}'
    opt['datasets'] = {'test_1': dict(tiny_restoration_options('toy')['datasets']['val'], batch_size_per_gpu=2)}
    opt['val'] = {'protocol': 'promptir', 'save_img': True, 'save_grid': True, 'suffix': None}
    result = run_cli(['test', '-opt', str(write_options(tmp_path / 'test.yml', opt))], cwd=toy_root)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    results = toy_root / 'results' / opt['name']

    rows = read_metrics_csv(results / 'toy_val_metrics.csv')
    assert list(rows[0]) == ['image', 'psnr', 'ssim', 'time_s']
    assert sorted(row['image'] for row in rows[:-1]) == [f'{index:04d}' for index in range(6)]
    assert rows[-1]['image'] == 'mean'
    assert float(rows[-1]['psnr']) == pytest.approx(np.mean([float(row['psnr']) for row in rows[:-1]]), rel=1e-5)
    csv_text = (results / 'toy_val_metrics.csv').read_text()
    markdown = (results / 'toy_val_metrics.md').read_text()
    assert markdown.startswith('## toy_val\n\n| images | skipped | PSNR (dB) ↑ | SSIM ↑ |\n'
                               '|---|---|---|---|\n| 6 | 0 |')
    steps = 'encoder' if model_type == 'RestoreVARModel' else 'network'
    for text in (log, csv_text, markdown):
        assert PROMPTIR.describe() in text
        assert f'time per image (ms): {steps} ' in text
    assert '# 6 images scored, 0 skipped\n' in csv_text

    pictures = sorted((results / 'visualization' / 'toy_val').glob('*.png'))
    assert [path.name for path in pictures] == sorted([f'{index:04d}_{opt["name"]}{kind}.png' for index in range(6)
                                                       for kind in ('', '_grid')])
    grid = cv2.imread(str(results / 'visualization' / 'toy_val' / f'0000_{opt["name"]}_grid.png'))
    assert grid.shape == (48, 3 * 48, 3)
    lq = cv2.imread(str(toy_root / 'data' / 'lq' / '0000.png'))
    gt = cv2.imread(str(toy_root / 'data' / 'gt' / '0000.png'))
    assert np.array_equal(grid[:, :48], lq) and np.array_equal(grid[:, 96:], gt)
