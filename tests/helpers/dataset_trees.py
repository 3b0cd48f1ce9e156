"""Tiny on-disk dataset trees in the layouts of ``datasets_meta/*.yml``, for the dataset tests.

:data:`EXAMPLES` gives, for every shipped meta, a few files named in the release's real conventions:
``(lq, gt)`` paths relative to the meta's root (``gt`` None for no-reference sets), or, for RestoreVAR's
JSON lists, ``(lq, gt, label, dataset)`` with RestoreVAR's degradation label and dataset name.
"""
import json
import os

import cv2
import numpy as np

from restorevar_plugin.data.meta import canonical_degradation

RV_TRAIN = [
    ('data/Haze/RESIDE/Train/hazy/5475_0.9_0.04.jpg', 'data/Haze/RESIDE/Train/GT/5475.jpg', 'Haze', 'RESIDE'),
    ('data/Low-light/LOLv1/Train/Low/711.png', 'data/Low-light/LOLv1/Train/GT/711.png', 'Low-light', 'LOLv1'),
    ('data/Motion blur/GoPro/Train/Blur/GOPR0384_11_02/fol/001395.png',
     'data/Motion blur/GoPro/Train/GT/GOPR0384_11_02/fol/001395.png', 'Motion blur', 'GoPro'),
    ('data/Snow/Snow100k/Train/Snow/beautiful_smile_00001.jpg', 'data/Snow/Snow100k/Train/GT/beautiful_smile_00001.jpg',
     'Snow', 'Snow100k'),
]


def _rv_test(folder, label, dataset, lq_name, gt_name):
    return [(f'data/{folder}/Test/input/{lq_name}', f'data/{folder}/Test/target/{gt_name}', label, dataset)]


EXAMPLES = {
    'reside_ots_train': [('haze/part1/0025_0.8_0.04.jpg', 'clear/0025.jpg'),
                         ('haze/part2/0039_1_0.2.jpg', 'clear/0039.jpg')],
    'reside_sots_outdoor_test': [('hazy/0001_0.8_0.2.jpg', 'gt/0001.png'), ('hazy/0002_0.95_0.16.jpg', 'gt/0002.png')],
    'snow100k_train': [('synthetic/beautiful_smile_00001.jpg', 'gt/beautiful_smile_00001.jpg'),
                       ('synthetic/winter_street_00412.jpg', 'gt/winter_street_00412.jpg')],
    'rain13k_train': [('input/1.jpg', 'target/1.jpg'), ('input/13712.jpg', 'target/13712.jpg')],
    'lolv1_train': [('low/2.png', 'high/2.png'), ('low/779.png', 'high/779.png')],
    'lolv1_test': [('low/1.png', 'high/1.png'), ('low/22.png', 'high/22.png')],
    'gopro_train': [('GOPR0372_07_00/blur/000047.png', 'GOPR0372_07_00/sharp/000047.png'),
                    ('GOPR0884_11_00/blur/000001.png', 'GOPR0884_11_00/sharp/000001.png')],
    'gopro_test': [('GOPR0384_11_00/blur/000001.png', 'GOPR0384_11_00/sharp/000001.png'),
                   ('GOPR0410_11_00/blur/000134.png', 'GOPR0410_11_00/sharp/000134.png')],
    'lhp_test': [('input/0001/0001.png', None), ('input/0002/0010.png', None)],
    'revide_test': [('hazy/C005/00000.JPG', 'gt/C005/00000.JPG'), ('hazy/W002/00010.JPG', 'gt/W002/00010.JPG')],
    'toled_test': [('LQ/1.png', 'HQ/1.png'), ('LQ/30.png', 'HQ/30.png')],
    'poled_test': [('LQ/1.png', 'HQ/1.png'), ('LQ/30.png', 'HQ/30.png')],
    'cdd_haze_rain_test': [('haze_rain/000001.png', 'clear/000001.png'), ('haze_rain/000350.png', 'clear/000350.png')],
    'lolblur_test': [('low_blur/0012/0000.png', 'high_sharp_scaled/0012/0000.png'),
                     ('low_blur/0017/0040.png', 'high_sharp_scaled/0017/0040.png')],
    'restorevar_reside_train': [('hazy/5475_0.9_0.04.jpg', 'GT/5475.jpg'), ('hazy/0025_1_0.2.jpg', 'GT/0025.jpg')],
    'restorevar_snow100k_train': [('Snow/beautiful_smile_00001.jpg', 'GT/beautiful_smile_00001.jpg')],
    'restorevar_rain13k_train': [('Rain/1.jpg', 'GT/1.jpg'), ('Rain/2000.jpg', 'GT/2000.jpg')],
    'restorevar_lolv1_train': [('Low/711.png', 'GT/711.png'), ('Low/21.png', 'GT/21.png')],
    'restorevar_gopro_train': [('Blur/GOPR0384_11_02/fol/001395.png', 'GT/GOPR0384_11_02/fol/001395.png'),
                               ('Blur/GOPR0372_07_00/fol/000047.png', 'GT/GOPR0372_07_00/fol/000047.png')],
    'restorevar_trainset': RV_TRAIN,
    'restorevar_valset': RV_TRAIN[:3],
    'restorevar_reside_test': _rv_test('Haze/RESIDE', 'Haze', 'RESIDE', '0001_0.8_0.2.jpg', '0001.png'),
    'restorevar_snow100k_test': _rv_test('Snow/Snow100k', 'Snow', 'Snow100k', 'a_00001.jpg', 'a_00001.jpg'),
    'restorevar_rain13k_test': _rv_test('Rain/Rain13K', 'Rain', 'Rain13K', '1.png', '1.png'),
    'restorevar_lolv1_test': _rv_test('Low-light/LOLv1', 'Low-light', 'LOLv1', '1.png', '1.png'),
    'restorevar_gopro_test': _rv_test('Motion blur/GoPro', 'Motion blur', 'GoPro', 'GOPR0384_11_00_000001.png',
                                      'GOPR0384_11_00_000001.png'),
    'restorevar_lhp_test': _rv_test('Rain/LHP', 'Rain', 'LHP', '0001_0001.png', '0001.png'),
    'restorevar_revide_test': _rv_test('Haze/REVIDE', 'Haze', 'REVIDE', 'C005_00000.JPG', 'C005_00000.JPG'),
    'restorevar_toled_test': _rv_test('UDC/toled', 'toled', 'toled', '1.png', '1.png'),
    'restorevar_poled_test': _rv_test('UDC/poled', 'poled', 'poled', '1.png', '1.png'),
    'restorevar_lolblur_test': _rv_test('Mixed/LOLBlur', 'Mixed', 'LOLBlur', '0012_0000.png', '0012_0000.png'),
    'restorevar_cdd_haze_rain_test': _rv_test('Mixed/CDD', 'Mixed', 'CDD_haze_rain', '000001.png', '000001.png'),
    'promptir_ots_train': [('synthetic/part1/0025_0.8_0.04.jpg', 'original/0025.jpg'),
                           ('synthetic/part3/0122_1_0.2.jpg', 'original/0122.jpg')],
    'promptir_rain100l_train': [('rainy/rain-1.png', 'gt/norain-1.png'), ('rainy/rain-199.png', 'gt/norain-199.png')],
    'awracle_derain_train': [('input/1.jpg', 'target/1.jpg'), ('input/2.jpg', 'target/2.jpg')],
    'awracle_dehaze_train': [('hazy/0025_0.8_0.04.jpg', 'clear/0025.jpg'), ('hazy/0039_1_0.2.jpg', 'clear/0039.jpg')],
    'awracle_desnow_train': [('data2/beautiful_smile_00001.jpg', 'gt/beautiful_smile_00001.jpg'),
                             ('data2/winter_00002.jpg', 'gt/winter_00002.jpg')],
    **{f'awracle_{task}_train_{split}': examples for task, examples in (
        ('derain', [('input/1.jpg', 'target/1.jpg')]),
        ('dehaze', [('hazy/0025_0.8_0.04.jpg', 'clear/0025.jpg')]),
        ('desnow', [('data2/beautiful_smile_00001.jpg', 'gt/beautiful_smile_00001.jpg')]))
       for split in ('low', 'high')},
}
for _size in 'sml':
    EXAMPLES[f'snow100k_{_size}_test'] = EXAMPLES['snow100k_train']
for _name in ('rain100h', 'rain100l', 'test100', 'test1200', 'test2800'):
    EXAMPLES[f'{_name}_test'] = [('input/1.png', 'target/1.png'), ('input/2.png', 'target/2.png')]


def write_image(path, image=None, size=(8, 8), seed=0):
    """Encode ``image`` (uint8/uint16 HxW[xC] in the file's channel order; default random RGB) to ``path``."""
    if image is None:
        image = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, encoded = cv2.imencode(os.path.splitext(path)[1].lower(), image)
    assert ok, path
    with open(path, 'wb') as handle:
        handle.write(encoded.tobytes())
    return path


def build_meta_tree(meta, data_root):
    """Write :data:`EXAMPLES` ``[meta.name]`` below ``data_root`` in ``meta``'s layout.

    Returns:
        set[tuple]: The expected ``(lq_path, gt_path, degradation, dataset)`` pairs (normalised paths).
    """
    root = os.path.join(data_root, meta.root)
    expected = set()
    entries = []
    for index, example in enumerate(EXAMPLES[meta.name]):
        lq, gt = example[:2]
        label = example[2] if len(example) > 2 else None
        degradation = canonical_degradation(label, 'test') if label else meta.degradation
        dataset = example[3] if len(example) > 3 else meta.dataset
        lq_path = os.path.normpath(os.path.join(root, lq))
        gt_path = None if gt is None else os.path.normpath(os.path.join(root, gt))
        write_image(lq_path, seed=index)
        if gt_path is not None:
            write_image(gt_path, seed=index + 100)
        expected.add((lq_path, gt_path, degradation, dataset))
        entries.append((lq, gt, label, dataset))
    if meta.rule == 'list_file':
        _write_lists(meta, root, entries)
    return expected


def _write_lists(meta, root, entries):
    list_files = meta.pairing['list_file']
    list_files = list_files if isinstance(list_files, list) else [list_files]
    derive = meta.pairing['gt_substitutions'] is not None
    for number, list_file in enumerate(list_files):
        chunk = entries[number::len(list_files)]
        path = os.path.normpath(os.path.join(root, list_file))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as handle:
            if path.endswith('.json'):
                items = [{'image_path': lq} if derive else
                         {'image_path': lq, 'target_path': gt, 'degradation': label, 'dataset': dataset}
                         for lq, gt, label, dataset in chunk]
                json.dump(items, handle)
            else:
                handle.write(''.join(f'{lq}\n' if derive else f'{lq}\t{gt}\n' for lq, gt, _, _ in chunk))
