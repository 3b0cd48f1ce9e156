"""The demo data set: every shipped photograph, split by photograph, all degradation types, seeded."""
import logging

import numpy as np
import pytest
import torch
from basicsr.utils.registry import DATASET_REGISTRY

from restorevar_plugin.data import demo_photographs as photographs_module
from restorevar_plugin.data.demo_photographs import (
    DEMO_PHOTOGRAPHS,
    DemoPhotograph,
    demo_photographs,
)
from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.data.synthetic_degradation_dataset import DEMO_DEGRADATIONS

SIZE = 32


def demo_set(photos, phase='test', **options):
    return DATASET_REGISTRY.get('SyntheticDegradationDataset')(
        dict({'name': f'demo_{photos}', 'phase': phase, 'photos': photos, 'size': SIZE}, **options))


def photograph_names(dataset):
    return {dataset[index]['gt_path'] for index in range(0, len(dataset), len(dataset.degradations))}


def test_every_listed_photograph_is_an_installed_colour_photograph():
    located = demo_photographs()
    assert len({photo.name for photo in DEMO_PHOTOGRAPHS}) == len(DEMO_PHOTOGRAPHS) == 19
    assert not located.missing, located.summary()
    reader = ImageReader()
    for photo, path in located.present:
        image, info = reader.read_with_info(str(path))
        assert info.channels == 3 and min(image.shape[:2]) >= 300, photo.name
        assert np.abs(image - image.mean(axis=2, keepdims=True)).mean() > 0.01, f'{photo.name} looks grayscale'


def test_split_is_disjoint_by_photograph_and_covers_the_table():
    train, test = demo_set('train', phase='train'), demo_set('test')
    train_names, test_names = photograph_names(train), photograph_names(test)
    assert not train_names & test_names
    assert len(train_names) + len(test_names) == len(DEMO_PHOTOGRAPHS)
    assert {'skimage/chelsea.png', 'skimage/coffee.png'} <= test_names
    # both views of the motorcycle scene are on the same side
    assert {'skimage/stereo_motorcycle_left.png', 'skimage/stereo_motorcycle_right.png'} <= train_names
    assert len(train) == len(train_names) * len(DEMO_DEGRADATIONS) and train.label == 'synthetic-photos'


def test_every_degradation_type_and_a_mix_appear_with_gt_at_the_crop_size():
    dataset = demo_set('test')
    items = [dataset[index] for index in range(len(dataset))]
    kinds = {item['degradation'] for item in items}
    assert kinds == {'haze', 'rain', 'snow', 'low_light', 'blur', 'haze+rain'}
    for item in items:
        assert item['lq'].shape == item['gt'].shape == (3, SIZE, SIZE)
        assert not torch.equal(item['lq'], item['gt']), item['lq_path']
    assert len({item['lq_path'] for item in items}) == len(items)


def test_items_are_deterministic_for_a_seed_and_change_with_it():
    first, again, other = demo_set('test', seed=3), demo_set('test', seed=3), demo_set('test', seed=4)
    for index in (0, 7, len(first) - 1):
        assert torch.equal(first[index]['lq'], again[index]['lq'])
    assert not torch.equal(first[0]['lq'], other[0]['lq'])
    train, train_again = demo_set('train', phase='train', seed=1), demo_set('train', phase='train', seed=1)
    torch.manual_seed(5)
    crops = [train[index]['lq'] for index in range(3)]
    torch.manual_seed(5)
    assert all(torch.equal(crop, train_again[index]['lq']) for index, crop in enumerate(crops))


def test_missing_optional_photographs_are_skipped_and_logged(monkeypatch, caplog):
    real = [photo for photo in DEMO_PHOTOGRAPHS if photo.split == 'test']
    absent_dist = DemoPhotograph('ghost', 'ghostpkg', 'no-such-distribution-xyz', 'ghost.png', 'test')
    absent_file = real[0]._replace(name='gone', relative_path='skimage/data/no_such_picture.png')
    monkeypatch.setattr(photographs_module, 'DEMO_PHOTOGRAPHS', (absent_dist, absent_file, *real))
    located = demo_photographs('test')
    assert located.missing == [absent_dist, absent_file]
    assert [photo for photo, _ in located.present] == real
    logger = logging.getLogger('basicsr')  # BasicSR's logger does not propagate once initialised
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger='basicsr'):
            dataset = demo_set('test')
    finally:
        logger.removeHandler(caplog.handler)
    assert photograph_names(dataset) == {f'{photo.package}/{photo.name}.png' for photo in real}
    assert 'missing (skipped): ghostpkg/ghost' in caplog.text and 'skimage/chelsea' in caplog.text
    monkeypatch.setattr(photographs_module, 'DEMO_PHOTOGRAPHS', (absent_dist, ))
    with pytest.raises(FileNotFoundError, match='none of the shipped photographs of photos: test is installed'):
        demo_set('test')


def test_option_errors_name_the_dataset():
    with pytest.raises(ValueError, match="demo_val.*photos must be one of train, test; got 'val'"):
        demo_set('val')
    with pytest.raises(ValueError, match='photos and split each select the clean images'):
        demo_set('test', split='val')
