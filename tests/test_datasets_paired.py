"""MultiDegradationPairedDataset: BasicSR items, transforms, task balance (also under EnlargedSampler), bad input."""
import json
import os
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataloader
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils.registry import DATASET_REGISTRY
from PIL import Image
from skimage import data as skimage_data
from torchvision import transforms as torchvision_transforms
from torchvision.transforms import InterpolationMode

from helpers.dataset_trees import write_image
from restorevar_plugin.commands.check_data import item_shares
from restorevar_plugin.data.balanced_sampling import BalancedDraw
from restorevar_plugin.data.image_io import ImageReader, ImageReadError, decode_image
from restorevar_plugin.data.meta import DatasetLayoutError, DatasetPairingError
from restorevar_plugin.data.transforms import (
    build_transform,
    crop_to_multiple,
    flip_rotate,
    lanczos_resize,
    resize_shorter_side,
    to_uint8,
)


def folder_meta(name, degradation, root):
    """Inline same_name meta for ``<data_root>/<root>/{lq,gt}``."""
    return {'name': name, 'dataset': name, 'degradation': degradation, 'split': 'train', 'root': root,
            'source': 'tests', 'pairing': {'rule': 'same_name', 'lq_dir': 'lq', 'gt_dir': 'gt'}}


def write_pairs(data_root, root, count, size=(8, 8), seed=0):
    """``count`` random PNG pairs (GT = LQ) under ``<data_root>/<root>/{lq,gt}``."""
    for index in range(count):
        image = np.random.default_rng(seed + index).integers(0, 256, (*size, 3), dtype=np.uint8)
        for side in ('lq', 'gt'):
            write_image(os.path.join(data_root, root, side, f'{index:04d}.png'), image)


def make_dataset(data_root, meta, **options):
    opt = {'name': 'toy', 'type': 'MultiDegradationPairedDataset', 'data_root': str(data_root), 'meta': meta,
           'phase': 'train', 'transform': 'native'}
    opt.update(options)
    return DATASET_REGISTRY.get('MultiDegradationPairedDataset')(opt)


@pytest.fixture
def haze_rain_root(tmp_path):
    """100 haze pairs and 10 rain pairs of 8x8 images."""
    write_pairs(tmp_path, 'haze', 100)
    write_pairs(tmp_path, 'rain', 10, seed=1000)
    return tmp_path


HAZE_RAIN = [folder_meta('hazy', 'haze', 'haze'), folder_meta('rainy', 'rain', 'rain')]


def test_item_is_basicsr_dict_rgb_chw_float(tmp_path):
    red_bgr = np.zeros((6, 10, 3), np.uint8)
    red_bgr[..., 2] = 255
    write_image(str(tmp_path / 'set' / 'lq' / 'a.png'), red_bgr)
    write_image(str(tmp_path / 'set' / 'gt' / 'a.png'), red_bgr // 2)
    item = make_dataset(tmp_path, [folder_meta('set', 'snow', 'set')], phase='val')[0]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path', 'degradation', 'dataset'}
    assert item['lq'].shape == (3, 6, 10) and item['lq'].dtype == torch.float32
    assert torch.equal(item['lq'][0], torch.ones(6, 10)) and item['lq'][1:].abs().max() == 0
    assert torch.allclose(item['gt'][0], torch.full((6, 10), 127 / 255))
    assert item['lq_path'].endswith('lq/a.png') and item['gt_path'].endswith('gt/a.png')
    assert (item['degradation'], item['dataset']) == ('snow', 'set')


def test_meta_by_name_and_phase_defaults(tmp_path):
    for side in ('low', 'high'):
        write_image(str(tmp_path / 'LOLdataset' / 'eval15' / side / '1.png'), size=(20, 30))
    opt = {'name': 'v', 'type': 'MultiDegradationPairedDataset', 'data_root': str(tmp_path), 'meta': 'lolv1_test',
           'phase': 'val'}
    cls = DATASET_REGISTRY.get('MultiDegradationPairedDataset')
    val = cls(opt)
    assert (val.settings.transform.name, val.settings.balance, len(val)) == ('paper_512', 'none', 1)
    assert val[0]['lq'].shape == (3, 512, 512) and val[0]['degradation'] == 'low_light'
    train = cls(dict(opt, phase='train'))
    assert (train.settings.transform.name, train.settings.balance) == ('restorevar', 'degradation')
    assert train.settings.transform.crop_size == 512


@pytest.mark.parametrize('spec, shape', [
    ({'type': 'restorevar', 'crop_size': 32}, (3, 32, 32)),
    ({'type': 'promptir', 'crop_size': 16}, (3, 16, 16)),
    ({'type': 'paper_512', 'size': 24}, (3, 24, 24)),
    ('native', (3, 41, 67)),
])
def test_transforms_give_the_stated_sizes(tmp_path, spec, shape):
    write_pairs(tmp_path, 'set', 1, size=(41, 67))
    item = make_dataset(tmp_path, [folder_meta('set', 'rain', 'set')], transform=spec)[0]
    assert item['lq'].shape == shape and item['gt'].shape == shape
    assert torch.equal(item['lq'], item['gt'])  # GT = LQ on disk: identical geometry for both


def photograph(shape):
    """A ``shape`` (H, W) window of scikit-image's coffee photograph (400x600), transposed for portraits."""
    image = skimage_data.coffee()
    if shape[0] > shape[1]:
        image = image.transpose(1, 0, 2)
    return np.ascontiguousarray(image[:shape[0], :shape[1]])


def official_loader(path, resize):
    """What the official RestoreVAR loader feeds the model: PIL ``convert('RGB')`` then torchvision ``resize``."""
    with Image.open(path) as image:
        return np.asarray(resize(image.convert('RGB'))).astype(np.float32) / np.float32(255)


@pytest.mark.parametrize('shape', [(360, 560), (560, 360)])
def test_paper_512_equals_pils_lanczos_bit_exactly(tmp_path, shape):
    rgb = photograph(shape)
    write_image(str(tmp_path / 'set' / 'lq' / 'a.png'), rgb[..., ::-1])
    write_image(str(tmp_path / 'set' / 'gt' / 'a.png'), rgb[::-1, :, ::-1])
    item = make_dataset(tmp_path, [folder_meta('set', 'haze', 'set')], phase='test', transform='paper_512')[0]
    resize = torchvision_transforms.Resize((512, 512), interpolation=InterpolationMode.LANCZOS)
    for key in ('lq', 'gt'):
        reference = official_loader(str(tmp_path / 'set' / key / 'a.png'), resize)
        assert torch.equal(item[key], torch.from_numpy(reference).permute(2, 0, 1))
    pil = Image.fromarray(rgb).resize((512, 512), Image.LANCZOS)
    assert np.array_equal(to_uint8(lanczos_resize(rgb.astype(np.float32) / 255, 512, 512)), np.asarray(pil))


@pytest.mark.parametrize('shape, resized', [((360, 560), (576, 896)), ((560, 360), (896, 576))])
def test_restorevar_transform_is_pils_shorter_side_576_then_one_crop(tmp_path, shape, resized):
    rgb = photograph(shape)
    path = write_image(str(tmp_path / 'a.png'), rgb[..., ::-1])
    image = ImageReader().read(path)
    reference = official_loader(path, torchvision_transforms.Resize(576, interpolation=InterpolationMode.LANCZOS))
    ours = resize_shorter_side(image, 576)
    assert ours.shape[:2] == resized and np.array_equal(ours, reference)
    lq, gt = build_transform({'type': 'restorevar', 'crop_size': 512})(image, image[::-1], np.random.default_rng(1))
    rng = np.random.default_rng(1)
    top, left = int(rng.integers(0, resized[0] - 511)), int(rng.integers(0, resized[1] - 511))
    assert np.array_equal(lq, reference[top:top + 512, left:left + 512])
    assert np.array_equal(gt, resize_shorter_side(image[::-1], 576)[top:top + 512, left:left + 512])


def test_lanczos_quantises_non_8bit_images_to_8_bits():
    image = np.random.default_rng(0).uniform(0, 1, (20, 30, 3)).astype(np.float32)
    out = lanczos_resize(image, 20, 30)
    assert np.array_equal(out, to_uint8(image).astype(np.float32) / 255)
    assert np.abs(out - image).max() <= 0.5 / 255 + 1e-7
    smaller = lanczos_resize(image, 10, 12)
    assert smaller.shape == (10, 12, 3) and np.array_equal(
        smaller, np.asarray(Image.fromarray(to_uint8(image)).resize((12, 10), Image.LANCZOS)) / np.float32(255))
    with pytest.raises(ValueError, match=r'expected an \(H, W, 3\) RGB image, got shape \(20, 30\)'):
        lanczos_resize(image[..., 0], 10, 10)


def test_promptir_crop_and_seven_flip_rotation_modes():
    image = np.arange(37 * 50 * 3, dtype=np.float32).reshape(37, 50, 3)
    cropped = crop_to_multiple(image, 16)
    assert cropped.shape == (32, 48, 3) and cropped[0, 0, 0] == image[2, 1, 0]
    base = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    assert np.array_equal(flip_rotate(base, 1), np.flipud(base))
    assert np.array_equal(flip_rotate(base, 6), np.rot90(base, 3))
    assert np.array_equal(flip_rotate(base, 7), np.flipud(np.rot90(base, 3)))
    transform = build_transform({'type': 'promptir', 'crop_size': 4, 'multiple_of': 4})
    seen = set()
    for seed in range(200):
        out = transform(base, None, np.random.default_rng(seed))[0]
        seen.add(next(mode for mode in range(8) if np.array_equal(out, flip_rotate(base, mode))))
    assert seen == set(range(1, 8))
    with pytest.raises(ValueError, match='image of 20x40, cropped to multiples of 16, is smaller than the crop size'):
        build_transform({'type': 'promptir', 'crop_size': 32})(np.zeros((20, 40, 3), np.float32), None, None)


@pytest.mark.parametrize('spec, message', [
    ('bicubic_512', "unknown transform 'bicubic_512'"),
    ({'type': 'restorevar', 'crop': 64}, 'transform restorevar has no parameter.* crop; accepted: crop_size'),
    ({'type': 'paper_512', 'size': 0}, 'size must be a positive integer'),
])
def test_bad_transform_options(tmp_path, spec, message):
    write_pairs(tmp_path, 'set', 1)
    with pytest.raises(ValueError, match=message):
        make_dataset(tmp_path, [folder_meta('set', 'rain', 'set')], transform=spec)


def test_balanced_sampling_is_fifty_fifty_despite_sizes(haze_rain_root):
    dataset = make_dataset(haze_rain_root, HAZE_RAIN, epoch_length=2000)
    assert len(dataset.pairs) == 110 and len(dataset) == 2000
    torch.manual_seed(0)
    counts = Counter(dataset[i]['degradation'] for i in range(2000))
    assert abs(counts['rain'] / 2000 - 0.5) < 0.05
    assert item_shares(dataset.pairs, dataset.settings) == {'haze': 0.5, 'rain': 0.5}


def test_weighted_and_unbalanced_shares(haze_rain_root):
    draw = BalancedDraw(['haze'] * 100 + ['rain'] * 10, {'haze': 3})
    rng = np.random.default_rng(0)
    picks = [draw.draw(rng) for _ in range(8000)]
    assert abs(np.mean([p >= 100 for p in picks]) - 0.25) < 0.03
    assert len(set(p for p in picks if p >= 100)) == 10  # inside a degradation: uniform, all used
    dataset = make_dataset(haze_rain_root, HAZE_RAIN, balance='none')
    assert item_shares(dataset.pairs, dataset.settings) == pytest.approx({'haze': 100 / 110, 'rain': 10 / 110})
    assert [dataset[i]['lq_path'] for i in (0, 105)] == [p.lq_path for p in (dataset.pairs[0], dataset.pairs[105])]


@pytest.mark.parametrize('options, message', [
    ({'degradation_weights': {'snow': 1}}, 'snow not among the degradations present'),
    ({'degradation_weights': {'haze': -1}}, 'non-negative'),
    ({'degradation_weights': {'haze': 1}, 'balance': 'none'}, 'needs balance: degradation'),
    ({'balance': 'dataset'}, "balance must be one of degradation, none; got 'dataset'"),
    ({'epoch_lenght': 10}, r'unknown option\(s\) epoch_lenght'),
    ({'epoch_length': 10, 'balance': 'none'}, 'epoch_length needs balance: degradation'),
    ({'io_backend': {'type': 'lmdb'}}, 'pairing rule lmdb'),
    ({'transform': 'native', 'allow_size_mismatch': True}, 'allow_size_mismatch needs a transform'),
])
def test_bad_dataset_options_are_named(haze_rain_root, options, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(haze_rain_root, HAZE_RAIN, **options)


def test_enlarged_sampler_world_size_two_disjoint_and_balanced(haze_rain_root):
    dataset = make_dataset(haze_rain_root, HAZE_RAIN)
    torch.manual_seed(0)
    per_rank = {}
    for rank in (0, 1):
        sampler = EnlargedSampler(dataset, num_replicas=2, rank=rank, ratio=1)
        loader = build_dataloader(dataset, {'phase': 'train', 'batch_size_per_gpu': 11, 'num_worker_per_gpu': 0},
                                  num_gpu=0, dist=True, sampler=sampler, seed=0)
        counts, epochs = Counter(), []
        for epoch in range(8):
            sampler.set_epoch(epoch)
            epochs.append(list(sampler))
            for batch in loader:
                counts.update(batch['degradation'])
        per_rank[rank] = (epochs, counts)
    for epoch in range(8):
        first, second = per_rank[0][0][epoch], per_rank[1][0][epoch]
        assert len(first) == len(second) == 55 and sorted(first + second) == list(range(110))
    for _, counts in per_rank.values():
        total = sum(counts.values())
        assert total == 440 and abs(counts['rain'] / total - 0.5) < 0.1


def test_train_draws_change_per_epoch_and_repeat_with_the_seed(haze_rain_root):
    dataset = make_dataset(haze_rain_root, HAZE_RAIN, transform={'type': 'restorevar', 'crop_size': 4})

    def epoch_paths(seed):
        torch.manual_seed(seed)
        return [[dataset[i]['lq_path'] for i in range(30)] for _ in range(2)]

    first, second = epoch_paths(5)
    assert first != second
    assert epoch_paths(5) == [first, second]


def test_val_items_are_deterministic(haze_rain_root):
    dataset = make_dataset(haze_rain_root, HAZE_RAIN, phase='val', balance='degradation',
                           transform={'type': 'restorevar', 'crop_size': 4})
    first = [dataset[i] for i in range(5)]
    torch.manual_seed(123)
    again = [dataset[i] for i in range(5)]
    assert all(a['lq_path'] == b['lq_path'] and torch.equal(a['lq'], b['lq']) for a, b in zip(first, again))


def test_dataloader_workers_draw_reproducibly(haze_rain_root):
    dataset = make_dataset(haze_rain_root, HAZE_RAIN, epoch_length=16)

    def run(seed):
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
        return [[path for batch in loader for path in batch['lq_path']] for _ in range(2)]

    epoch1, epoch2 = run(3)
    assert epoch1 != epoch2 and run(3) == [epoch1, epoch2]


def test_conversions_16bit_gray_rgba():
    def encode(image):
        return cv2.imencode('.png', image)[1].tobytes()

    sixteen = np.array([[[0, 32768, 65535]]], np.uint16)
    image, info = decode_image(encode(sixteen), 'x16.png')
    np.testing.assert_allclose(image[0, 0], [65535 / 65535, 32768 / 65535, 0], rtol=0, atol=1e-7)
    assert info.bit_depth == 16 and info.conversions() == ['16-bit -> float']
    gray, info = decode_image(encode(np.array([[0, 51, 255]], np.uint8)), 'g.png')
    assert gray.shape == (1, 3, 3) and np.allclose(gray[0, 1], 0.2) and info.conversions() == ['gray -> 3 channels']
    bgra = np.array([[[255, 0, 0, 0], [0, 255, 0, 255]]], np.uint8)
    rgb, info = decode_image(encode(bgra), 'a.png')
    np.testing.assert_array_equal(rgb[0], [[0, 0, 1], [0, 1, 0]])  # alpha dropped, colour kept even at alpha 0
    assert info.conversions() == ['alpha dropped']


def test_unreadable_truncated_and_empty_files_name_the_file(tmp_path):
    write_pairs(tmp_path, 'set', 3, size=(16, 16))
    lq_dir = tmp_path / 'set' / 'lq'
    data = (lq_dir / '0000.png').read_bytes()
    (lq_dir / '0000.png').write_bytes(data[:len(data) // 2])
    (lq_dir / '0001.png').write_bytes(b'')
    (lq_dir / '0002.png').write_bytes(b'not a png at all')
    dataset = make_dataset(tmp_path, [folder_meta('set', 'rain', 'set')], balance='none')
    for index, message in ((0, 'cannot be decoded'), (1, 'the file is empty'), (2, 'cannot be decoded')):
        with pytest.raises(ImageReadError, match=message) as error:
            dataset[index]
        assert f'{index:04d}.png' in str(error.value)
    jpeg = write_image(str(tmp_path / 'cut.jpg'), size=(32, 32))
    with open(jpeg, 'r+b') as handle:
        handle.truncate(os.path.getsize(jpeg) // 2)
    with pytest.raises(ImageReadError, match='cut.jpg: cannot be decoded'):
        ImageReader().read(jpeg)
    with pytest.raises(ImageReadError, match='gone.png: cannot be read'):
        ImageReader().read(str(tmp_path / 'gone.png'))


def test_size_mismatch_is_resized_independently_under_paper_512_and_an_error_otherwise(tmp_path):
    write_image(str(tmp_path / 'set' / 'lq' / 'a.png'), size=(10, 12))
    write_image(str(tmp_path / 'set' / 'gt' / 'a.png'), size=(10, 14), seed=1)
    meta = [folder_meta('set', 'rain', 'set')]
    with pytest.raises(ValueError, match='size mismatch.*lq/a.png is 10x12 but GT .*gt/a.png is 10x14; transform '
                                         'native needs equal sizes'):
        make_dataset(tmp_path, meta)[0]
    item = make_dataset(tmp_path, meta, phase='test', transform={'type': 'paper_512', 'size': 16})[0]
    assert item['lq'].shape == item['gt'].shape == (3, 16, 16)
    for key in ('lq', 'gt'):
        alone = lanczos_resize(ImageReader().read(item[f'{key}_path']), 16, 16)
        assert torch.equal(item[key], torch.from_numpy(alone).permute(2, 0, 1))
    with pytest.raises(ValueError, match='allow_size_mismatch: false forbids resizing them independently'):
        make_dataset(tmp_path, meta, transform='paper_512', allow_size_mismatch=False)[0]


def test_missing_gt_empty_folder_and_missing_root_fail_at_construction(tmp_path):
    write_pairs(tmp_path, 'set', 2)
    os.remove(tmp_path / 'set' / 'gt' / '0001.png')
    with pytest.raises(DatasetPairingError, match='missing GT: .*lq/0001.png'):
        make_dataset(tmp_path, [folder_meta('set', 'rain', 'set')])
    (tmp_path / 'empty' / 'lq').mkdir(parents=True)
    (tmp_path / 'empty' / 'gt').mkdir()
    with pytest.raises(DatasetLayoutError, match='empty/lq: no degraded images'):
        make_dataset(tmp_path, [folder_meta('empty', 'rain', 'empty')])
    with pytest.raises(DatasetLayoutError, match='data root .*nowhere does not exist'):
        make_dataset(tmp_path / 'nowhere', [folder_meta('set', 'rain', 'set')])


def test_no_reference_sets_have_no_gt_and_cannot_train(tmp_path):
    write_image(str(tmp_path / 'LHP-Rain' / 'test' / 'input' / '0001' / '0001.png'), size=(9, 9))
    item = make_dataset(tmp_path, 'lhp_test', phase='test', transform={'type': 'paper_512', 'size': 32})[0]
    assert 'gt' not in item and 'gt_path' not in item and item['lq'].shape == (3, 32, 32)
    with pytest.raises(ValueError, match='training needs GT'):
        make_dataset(tmp_path, 'lhp_test')


def list_meta(tmp_path, names):
    """Inline list_file meta over ``names`` (in that order) with pairs under ``<tmp_path>/{lq,gt}``."""
    entries = []
    for index, name in enumerate(names):
        for side in ('lq', 'gt'):
            write_image(str(tmp_path / side / f'{name}.png'), seed=index)
        entries.append({'image_path': f'lq/{name}.png', 'target_path': f'gt/{name}.png', 'degradation': 'Snow',
                        'dataset': 'Snow100k'})
    (tmp_path / 'list.json').write_text(json.dumps(entries))
    return {'name': 'snow_list', 'dataset': 'Snow100k', 'degradation': 'from_list', 'split': 'test', 'root': '.',
            'source': 'tests', 'pairing': {'rule': 'list_file', 'list_file': 'list.json'}}


def test_max_items_keeps_the_first_pairs_in_list_order(tmp_path):
    meta = list_meta(tmp_path, ['e', 'b', 'd', 'a', 'c'])
    dataset = make_dataset(tmp_path, [meta], phase='test', max_items=3)
    assert len(dataset) == 3
    assert [os.path.basename(dataset[i]['lq_path']) for i in range(3)] == ['e.png', 'b.png', 'd.png']
    assert len(make_dataset(tmp_path, [meta], phase='test', max_items=50)) == 5
    assert len(make_dataset(tmp_path, [meta], phase='test')) == 5


@pytest.mark.parametrize('value', [0, -2, True, '5001', 2.5])
def test_bad_max_items_is_named(tmp_path, value):
    meta = list_meta(tmp_path, ['a', 'b'])
    with pytest.raises(ValueError, match=f'dataset toy .*max_items must be a positive integer.*got {value!r}'):
        make_dataset(tmp_path, [meta], phase='test', max_items=value)
