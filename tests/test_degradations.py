"""Synthetic degradations (determinism, strength, character) and SyntheticDegradationDataset."""
import numpy as np
import pytest
import torch
from basicsr.utils.registry import DATASET_REGISTRY
from skimage import data as skimage_data
from skimage.metrics import peak_signal_noise_ratio

from helpers.dataset_trees import write_image
from restorevar_plugin.data.degradations import (
    DEGRADATIONS,
    degrade,
    motion_blur_kernel,
    parse_degradation,
)
from restorevar_plugin.data.item_randomness import item_rng
from restorevar_plugin.data.synthetic_degradation_dataset import BUNDLED_SPLITS
from restorevar_plugin.data.transforms import lanczos_resize

# Mean PSNR (dB) of degraded vs clean, measured over astronaut/chelsea/coffee/rocket at 64x64 and seeds 0-4
# (the protocol of `clean_images` below); the test allows +-3 dB around it.
MEASURED_MEAN_PSNR = {'haze': 13.2, 'rain': 19.1, 'snow': 14.7, 'low_light': 8.8, 'blur': 26.2, 'haze+rain': 11.9}


@pytest.fixture(scope='module')
def clean_images():
    return [lanczos_resize(getattr(skimage_data, name)().astype(np.float32) / 255, 64, 64)
            for name in ('astronaut', 'chelsea', 'coffee', 'rocket')]


def mean_psnr(images, name):
    return np.mean([peak_signal_noise_ratio(image, degrade(image, name, np.random.default_rng(seed)), data_range=1)
                    for image in images for seed in range(5)])


@pytest.mark.parametrize('name', [*DEGRADATIONS, 'haze+rain', 'low_light+blur'])
def test_deterministic_for_a_seed_and_valid_output(clean_images, name):
    image = clean_images[0]
    first = degrade(image, name, np.random.default_rng(7))
    assert np.array_equal(first, degrade(image, name, np.random.default_rng(7)))
    assert not np.array_equal(first, degrade(image, name, np.random.default_rng(8)))
    assert first.shape == image.shape and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1


@pytest.mark.parametrize('name, measured', MEASURED_MEAN_PSNR.items())
def test_psnr_drop_per_type(clean_images, name, measured):
    assert abs(mean_psnr(clean_images, name) - measured) < 3.0


def test_each_degradation_has_its_character(clean_images):
    image = clean_images[1]
    rng = np.random.default_rng

    def gradient_energy(x):
        return np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()

    hazy = degrade(image, 'haze', rng(0))
    assert hazy.mean() > image.mean() + 0.05 and hazy.std() < 0.8 * image.std()
    assert np.all(degrade(image, 'rain', rng(0)) >= image - 1e-6)
    snowy = degrade(image, 'snow', rng(0))
    assert snowy.mean() > image.mean() and (snowy > 0.85).mean() > (image > 0.85).mean()
    assert degrade(image, 'low_light', rng(0)).mean() < 0.5 * image.mean()
    blurred = degrade(image, 'blur', rng(0))
    assert gradient_energy(blurred) < 0.8 * gradient_energy(image) and abs(blurred.mean() - image.mean()) < 0.01


def test_mixes_apply_in_physical_order_and_degrade_more(clean_images):
    image = clean_images[2]
    assert parse_degradation('low_light+blur') == ['blur', 'low_light']
    assert np.array_equal(degrade(image, 'rain+haze', np.random.default_rng(3)),
                          degrade(image, 'haze+rain', np.random.default_rng(3)))
    assert mean_psnr(clean_images, 'low_light+blur') < mean_psnr(clean_images, 'blur') - 10
    for bad in ('fog', 'haze+haze', 'haze+'):
        with pytest.raises(ValueError, match='expected one of haze, rain, snow, low_light, blur'):
            parse_degradation(bad)
    with pytest.raises(ValueError, match=r'expected an \(H, W, 3\) image'):
        degrade(image[..., 0], 'haze', np.random.default_rng(0))


@pytest.mark.parametrize('size', [3, 9, 31])
def test_motion_blur_kernel_is_a_normalised_trajectory(size):
    kernel = motion_blur_kernel(size, np.random.default_rng(size))
    assert kernel.shape == (size, size) and kernel.min() >= 0 and kernel.sum() == pytest.approx(1, abs=1e-5)
    assert (kernel > 0).sum() >= size  # a path, not a point


def make_synthetic(**options):
    return DATASET_REGISTRY.get('SyntheticDegradationDataset')(dict({'name': 'synth', 'size': 32}, **options))


def test_bundled_split_is_held_out_and_items_are_basicsr_dicts():
    assert not set(BUNDLED_SPLITS['train']) & set(BUNDLED_SPLITS['val'])
    train, val = make_synthetic(phase='train'), make_synthetic(phase='val')
    assert (len(train), len(val)) == (7 * 5, 2 * 5)
    item = val[3]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path', 'degradation', 'dataset'}
    assert item['lq'].shape == item['gt'].shape == (3, 32, 32) and item['lq'].dtype == torch.float32
    assert (item['degradation'], item['gt_path'], item['dataset']) == ('low_light', 'skimage/chelsea.png',
                                                                       'synthetic-skimage')
    names = {val[i]['lq_path'] for i in range(len(val))}
    assert len(names) == len(val)


def test_val_items_repeat_and_train_items_vary_with_a_reproducible_seed():
    val = make_synthetic(phase='val', degradations=['rain', 'haze+rain'])
    first = val[1]
    torch.manual_seed(99)
    assert torch.equal(first['lq'], val[1]['lq']) and first['degradation'] == 'haze+rain'
    train = make_synthetic(phase='train', degradations=['snow'])

    def epochs(seed):
        torch.manual_seed(seed)
        return [torch.stack([train[i]['lq'] for i in range(len(train))]) for _ in range(2)]

    one, two = epochs(0)
    assert not torch.equal(one, two)
    again = epochs(0)
    assert torch.equal(one, again[0]) and torch.equal(two, again[1])


def test_clean_folder_source_and_option_errors(tmp_path):
    for index in range(2):
        write_image(str(tmp_path / 'clean' / f'img{index}.png'), size=(40, 50), seed=index)
    dataset = make_synthetic(phase='val', clean_folder=str(tmp_path / 'clean'), degradations=['blur'])
    item = dataset[1]
    assert len(dataset) == 2 and item['gt_path'] == str(tmp_path / 'clean' / 'img1.png')
    assert item['dataset'] == 'synthetic-clean' and item['lq_path'].endswith('img1_blur_0001.png')
    with pytest.raises(ValueError, match='split and clean_folder each select the clean images; give only one'):
        make_synthetic(clean_folder=str(tmp_path / 'clean'), split='val')
    with pytest.raises(FileNotFoundError, match='holds no images'):
        make_synthetic(clean_folder=str(tmp_path))
    with pytest.raises(ValueError, match="degradation 'smog'"):
        make_synthetic(degradations=['haze', 'smog'])
    with pytest.raises(ValueError, match=r'unknown option\(s\) crop_size'):
        make_synthetic(crop_size=32)
    with pytest.raises(ValueError, match=r'load_size \(16\) must be at least size \(32\)'):
        make_synthetic(load_size=16)


def dihedral_modes(image):
    """The 8 flips / rotations of an ``(H, W, C)`` square image, keyed by name."""
    modes = {}
    for name, turned in (('', image), ('t', image.transpose(1, 0, 2))):
        for flips, out in (('', turned), ('h', turned[:, ::-1]), ('v', turned[::-1]), ('hv', turned[::-1, ::-1])):
            modes.setdefault(name + flips, out)
    return modes


@pytest.mark.parametrize('options, count', [({}, 1), ({'use_hflip': True}, 2), ({'use_rot': True}, 4),
                                            ({'use_hflip': True, 'use_rot': True}, 8)])
def test_train_crops_are_flipped_and_rotated_as_asked_before_degradation(tmp_path, options, count):
    write_image(str(tmp_path / 'clean' / 'img.png'), size=(32, 32), seed=3)
    dataset = make_synthetic(phase='train', clean_folder=str(tmp_path / 'clean'), degradations=['haze'],
                             load_size=32, **options)
    modes = {name: np.ascontiguousarray(out) for name, out in dihedral_modes(dataset.clean_image(0)).items()}
    seen = set()
    for seed in range(48):
        torch.manual_seed(seed)
        item = dataset[0]
        gt = item['gt'].permute(1, 2, 0).numpy()
        name = next(name for name, out in modes.items() if np.array_equal(gt, out))
        seen.add(name)
        torch.manual_seed(seed)
        rng = item_rng(0, 0, 'train')
        rng.integers(0, 1), rng.integers(0, 1)  # the crop's draws
        dataset.augment(modes[''], rng)
        assert np.allclose(item['lq'].permute(1, 2, 0).numpy(), degrade(modes[name], 'haze', rng), atol=1e-6)
    assert len(seen) == count
    val = make_synthetic(phase='val', clean_folder=str(tmp_path / 'clean'), degradations=['haze'], load_size=32,
                         **options)
    assert np.array_equal(val[0]['gt'].permute(1, 2, 0).numpy(), modes[''])


def test_flip_options_must_be_booleans():
    with pytest.raises(ValueError, match="use_rot must be true or false; got 'yes'"):
        make_synthetic(use_rot='yes')
