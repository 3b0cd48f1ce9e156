"""Dataset metas: every shipped layout pairs the files of a tiny tree; schema and pairing errors are clear."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from helpers.dataset_trees import EXAMPLES, build_meta_tree, write_image
from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.data.meta import (
    META_PATH_ENV,
    DatasetLayoutError,
    DatasetPairingError,
    MetaSchemaError,
    available_metas,
    default_meta_dir,
    find_pairs,
    load_dataset_meta,
    parse_dataset_meta,
    scan_pairs,
)

SHIPPED = sorted(available_metas([]))


def inline(**overrides):
    """A valid inline meta (same_name, lq/ and gt/ below 'toy'), with top-level keys overridden."""
    meta = {'name': 'toy', 'dataset': 'Toy', 'degradation': 'rain', 'split': 'train', 'root': 'toy',
            'source': 'tests', 'pairing': {'rule': 'same_name', 'lq_dir': 'lq', 'gt_dir': 'gt'}}
    meta.update(overrides)
    return meta


def test_every_shipped_meta_has_an_example_tree():
    assert default_meta_dir().is_dir()
    assert len(SHIPPED) >= 40
    assert sorted(EXAMPLES) == SHIPPED


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_meta_pairs_its_layout(name, tmp_path):
    meta = load_dataset_meta(name)
    assert meta.name == name and meta.origin.endswith(f'{name}.yml')
    expected = build_meta_tree(meta, str(tmp_path))
    report = scan_pairs(meta, str(tmp_path))
    assert report.problems() == [] and report.orphan_gt == [] and report.duplicates == []
    assert {(os.path.normpath(p.lq_path), p.gt_path and os.path.normpath(p.gt_path), p.degradation, p.dataset)
            for p in report.pairs} == expected


@pytest.mark.parametrize('name', [n for n in SHIPPED if EXAMPLES[n][0][1] is not None])
def test_shipped_meta_reports_a_missing_gt_by_name(name, tmp_path):
    meta = load_dataset_meta(name)
    build_meta_tree(meta, str(tmp_path))
    pairs = find_pairs(meta, str(tmp_path))
    os.remove(pairs[0].gt_path)
    with pytest.raises(DatasetPairingError, match='missing GT') as error:
        find_pairs(meta, str(tmp_path))
    assert pairs[0].lq_path in str(error.value) and pairs[0].gt_path in str(error.value)
    assert meta.origin in str(error.value)


def test_shipped_metas_state_their_source():
    for name in SHIPPED:
        meta = load_dataset_meta(name)
        text = Path(meta.origin).read_text()
        assert text.startswith('#') and 'http' in meta.source, name


def test_restorevar_json_loads_as_it_is(tmp_path):
    """Two entries exactly as in the official valset.json (labels 'Low-light', 'Motion blur', spaces in paths)."""
    entries = [
        {'image_path': 'data/Low-light/LOLv1/Train/Low/711.png', 'target_path': 'data/Low-light/LOLv1/Train/GT/711.png',
         'degradation': 'Low-light', 'dataset': 'LOLv1'},
        {'image_path': 'data/Motion blur/GoPro/Train/Blur/GOPR0384_11_02/fol/001395.png',
         'target_path': 'data/Motion blur/GoPro/Train/GT/GOPR0384_11_02/fol/001395.png',
         'degradation': 'Motion blur', 'dataset': 'GoPro'},
    ]
    for entry in entries:
        write_image(str(tmp_path / entry['image_path']))
        write_image(str(tmp_path / entry['target_path']))
    (tmp_path / 'valset.json').write_text(json.dumps(entries))
    pairs = find_pairs(load_dataset_meta('restorevar_valset'), str(tmp_path))
    assert [(p.degradation, p.dataset) for p in pairs] == [('low_light', 'LOLv1'), ('blur', 'GoPro')]
    assert pairs[1].lq_path == os.path.normpath(str(tmp_path / entries[1]['image_path']))


@pytest.mark.parametrize('label, expected', [('toled', 'udc'), ('poled', 'udc'), ('Haze', 'haze'), ('Mixed', 'mixed'),
                                             ('derain', 'rain'), ('snow', 'snow')])
def test_list_degradation_labels_map_to_ours(tmp_path, label, expected):
    write_image(str(tmp_path / 'a.png'))
    write_image(str(tmp_path / 'b.png'))
    entry = {'image_path': 'a.png', 'target_path': 'b.png', 'degradation': label}
    (tmp_path / 'l.json').write_text(json.dumps([entry]))
    meta = parse_dataset_meta(inline(root='.', degradation='from_list',
                                     pairing={'rule': 'list_file', 'list_file': 'l.json'}))
    assert find_pairs(meta, str(tmp_path))[0].degradation == expected


@pytest.mark.parametrize('entry, message', [
    ({'image_path': 'a.png', 'target_path': 'b.png', 'degradation': 'Fog'}, "unknown degradation 'Fog'"),
    ({'image_path': 'a.png', 'target_path': 'b.png'}, 'has no "degradation"'),
    ({'image_path': 'a.png', 'degradation': 'Haze'}, 'has no GT path'),
    ({'target_path': 'b.png', 'degradation': 'Haze'}, 'none of the keys image_path'),
])
def test_bad_list_entries_name_the_list_and_entry(tmp_path, entry, message):
    write_image(str(tmp_path / 'a.png'))
    write_image(str(tmp_path / 'b.png'))
    (tmp_path / 'l.json').write_text(json.dumps([entry]))
    meta = parse_dataset_meta(inline(root='.', degradation='from_list',
                                     pairing={'rule': 'list_file', 'list_file': 'l.json'}))
    with pytest.raises(MetaSchemaError, match=message) as error:
        find_pairs(meta, str(tmp_path))
    assert 'l.json' in str(error.value)


def test_list_label_conflicting_with_meta_is_an_error(tmp_path):
    write_image(str(tmp_path / 'a.png'))
    entry = {'image_path': 'a.png', 'target_path': 'a.png', 'degradation': 'Snow'}
    (tmp_path / 'l.json').write_text(json.dumps([entry]))
    meta = parse_dataset_meta(inline(root='.', degradation='haze',
                                     pairing={'rule': 'list_file', 'list_file': 'l.json'}))
    with pytest.raises(MetaSchemaError, match=r"entry 0 says degradation 'Snow' \(snow\) but meta toy"):
        find_pairs(meta, str(tmp_path))


def test_list_entries_with_missing_files_and_duplicates(tmp_path):
    write_image(str(tmp_path / 'a.png'))
    write_image(str(tmp_path / 'b.png'))
    (tmp_path / 'l.txt').write_text('# comment\na.png\tb.png\n\na.png\tb.png\nmissing.png\tb.png\na.png\tgone.png\n')
    meta = parse_dataset_meta(inline(root='.', pairing={'rule': 'list_file', 'list_file': 'l.txt'}))
    report = scan_pairs(meta, str(tmp_path))
    assert len(report.pairs) == 2
    assert report.duplicates == [str(tmp_path / 'a.png'), str(tmp_path / 'a.png')]
    assert report.missing_lq == [str(tmp_path / 'missing.png')]
    assert report.missing_gt == [(str(tmp_path / 'a.png'), (str(tmp_path / 'gone.png'),))]


def test_regex_rule_reports_names_that_do_not_match(tmp_path):
    meta = load_dataset_meta('reside_sots_outdoor_test')
    build_meta_tree(meta, str(tmp_path))
    odd = write_image(str(tmp_path / meta.root / 'hazy' / 'notes_copy.jpg'))
    report = scan_pairs(meta, str(tmp_path))
    assert report.unmatched == [odd] and len(report.pairs) == 2
    with pytest.raises(DatasetPairingError, match='notes_copy.jpg'):
        find_pairs(meta, str(tmp_path))


def test_two_existing_gt_candidates_are_ambiguous(tmp_path):
    meta = load_dataset_meta('reside_sots_outdoor_test')
    build_meta_tree(meta, str(tmp_path))
    write_image(str(tmp_path / meta.root / 'gt' / '0001.jpg'))
    with pytest.raises(DatasetPairingError, match='ambiguous GT.*0001_0.8_0.2.jpg'):
        find_pairs(meta, str(tmp_path))


def test_orphan_gt_files_are_reported_not_fatal(tmp_path):
    meta = load_dataset_meta('lolv1_test')
    build_meta_tree(meta, str(tmp_path))
    orphan = write_image(str(tmp_path / meta.root / 'high' / '99.png'))
    report = scan_pairs(meta, str(tmp_path))
    assert report.orphan_gt == [orphan] and report.problems() == []


def test_lmdb_rule_reads_through_basicsr_file_client(tmp_path):
    images = {key: np.random.default_rng(i).integers(0, 256, (6, 7, 3), dtype=np.uint8)
              for i, key in enumerate(['0001', '0002'])}
    (tmp_path / 'db').mkdir()
    for side, offset in (('lq', 0), ('gt', 50)):
        folder = tmp_path / f'{side}_png'
        for key, image in images.items():
            write_image(str(folder / f'{key}.png'), np.clip(image.astype(int) + offset, 0, 255).astype(np.uint8))
        make_lmdb_from_imgs(str(folder), str(tmp_path / 'db' / f'{side}.lmdb'), [f'{k}.png' for k in images],
                            list(images), map_size=1 << 20)
    meta = parse_dataset_meta(inline(root='db', pairing={'rule': 'lmdb', 'lq_db': 'lq.lmdb', 'gt_db': 'gt.lmdb'}))
    pairs = find_pairs(meta, str(tmp_path))
    assert [os.path.basename(p.lq_path) for p in pairs] == ['0001', '0002']
    reader = ImageReader()
    lq = reader.read(pairs[1].lq_path)
    expected = cv2.cvtColor(images['0002'], cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    np.testing.assert_allclose(lq, expected, atol=1e-6)
    assert reader.read(pairs[1].gt_path).shape == (6, 7, 3)


def test_no_reference_rule_gives_pairs_without_gt(tmp_path):
    meta = load_dataset_meta('lhp_test')
    build_meta_tree(meta, str(tmp_path))
    pairs = find_pairs(meta, str(tmp_path))
    assert len(pairs) == 2 and all(p.gt_path is None for p in pairs) and not meta.has_reference


@pytest.mark.parametrize('overrides, message', [
    ({'colour': 'rgb'}, r"toy.yml: unknown key\(s\) 'colour'"),
    ({'degradaton': 'rain'}, "'degradaton' \\(did you mean 'degradation'\\?\\)"),
    ({'split': 'validation'}, "key 'split' is 'validation'; expected one of train, val, test"),
    ({'degradation': 'fog'}, "key 'degradation' is 'fog'"),
    ({'pairing': {'rule': 'by_magic', 'lq_dir': 'a'}}, "pairing.rule is 'by_magic'; expected one of same_name"),
    ({'pairing': {'rule': 'same_name', 'lq_dir': 'a'}}, "pairing \\(rule same_name\\): missing required key 'gt_dir'"),
    ({'pairing': {'rule': 'same_name', 'lq_dir': 'a', 'gt_dir': 'b', 'gt_ext': ['.png']}},
     "pairing \\(rule same_name\\): unknown key\\(s\\) 'gt_ext' \\(did you mean 'gt_extensions'"),
    ({'pairing': {'rule': 'regex', 'lq_dir': 'a', 'gt_dir': 'b', 'pattern': '(', 'replacement': ''}},
     "key 'pattern' is '\\('"),
    ({'components': ['haze', 'rain']}, 'components.*only allowed with degradation: mixed'),
    ({'degradation': 'from_list'}, 'from_list needs pairing.rule list_file'),
    ({'name': 'other'}, "name is 'other' but the file is named 'toy.yml'"),
])
def test_meta_schema_errors_name_the_file_and_key(tmp_path, overrides, message):
    path = tmp_path / 'toy.yml'
    path.write_text(yaml.safe_dump(inline(**overrides)))
    with pytest.raises(MetaSchemaError, match=message) as error:
        load_dataset_meta(str(path))
    assert str(path) in str(error.value)


def test_missing_required_key_is_named(tmp_path):
    content = inline()
    del content['source']
    path = tmp_path / 'toy.yml'
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(MetaSchemaError, match="toy.yml: missing required key 'source'"):
        load_dataset_meta(str(path))


def test_unknown_meta_name_gives_close_matches_and_search_path(tmp_path):
    with pytest.raises(MetaSchemaError, match="no dataset meta named 'reside_sots_test'.*Did you mean.*"
                                              'reside_sots_outdoor_test') as error:
        load_dataset_meta('reside_sots_test', [str(tmp_path)])
    assert str(tmp_path) in str(error.value) and str(default_meta_dir()) in str(error.value)


def test_meta_dirs_and_env_var_come_before_the_shipped_folder(tmp_path, monkeypatch):
    first, second = tmp_path / 'first', tmp_path / 'second'
    for folder, split in ((first, 'val'), (second, 'test')):
        folder.mkdir()
        (folder / 'lolv1_test.yml').write_text(yaml.safe_dump(inline(name='lolv1_test', split=split)))
    monkeypatch.setenv(META_PATH_ENV, str(second))
    assert load_dataset_meta('lolv1_test').split == 'test'
    assert load_dataset_meta('lolv1_test', [str(first)]).split == 'val'
    monkeypatch.delenv(META_PATH_ENV)
    assert load_dataset_meta('lolv1_test').origin == str(default_meta_dir() / 'lolv1_test.yml')


def test_missing_data_root_folder_and_empty_folder(tmp_path):
    meta = load_dataset_meta('lolv1_test')
    with pytest.raises(DatasetLayoutError, match=f'data root {tmp_path / "nowhere"} does not exist'):
        find_pairs(meta, str(tmp_path / 'nowhere'))
    with pytest.raises(DatasetLayoutError, match='LOLdataset/eval15: folder does not exist.*key root'):
        find_pairs(meta, str(tmp_path))
    (tmp_path / 'LOLdataset' / 'eval15' / 'low').mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match='eval15/high: folder does not exist.*key pairing.gt_dir'):
        find_pairs(meta, str(tmp_path))
    (tmp_path / 'LOLdataset' / 'eval15' / 'high').mkdir()
    (tmp_path / 'LOLdataset' / 'eval15' / 'low' / 'readme.txt').write_text('not an image')
    with pytest.raises(DatasetLayoutError, match='eval15/low: no degraded images with extensions .png'):
        find_pairs(meta, str(tmp_path))
