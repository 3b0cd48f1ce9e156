"""The harness replaces exactly the attributes it documents while a pipeline runs, and restores BasicSR's own."""
import argparse
import importlib
import sys

import basicsr.test
import basicsr.train
import pytest

from restorevar_plugin import harness

MODULES = ('basicsr.utils.options', 'basicsr.train', 'basicsr.test')


def attribute_snapshot():
    """``{(module, attribute): value}`` of every attribute of the modules the harness touches, and ``sys.argv``."""
    snapshot = {('sys', 'argv'): sys.argv}
    for name in MODULES:
        snapshot.update({(name, key): value for key, value in vars(importlib.import_module(name)).items()})
    return snapshot


def replaced_since(before):
    """The (module, attribute) pairs whose value is not the very object it was in ``before``."""
    now = attribute_snapshot()
    return {key for key in before.keys() | now.keys() if before.get(key) is not now.get(key)}


@pytest.mark.parametrize('kind', ['train', 'test'])
@pytest.mark.parametrize('fails', [False, True])
def test_every_patched_name_is_basicsr_original_after_the_pipeline(tmp_path, monkeypatch, kind, fails):
    option_file = tmp_path / 'options.yml'
    option_file.write_text('name: harness_probe\ndatasets: {}\npath: {}\ndist_params: {backend: gloo, port: 29511}\n')
    seen = {}

    def pipeline(root_path):
        seen['root'] = root_path
        seen['replaced'] = replaced_since(before)
        seen['argv'] = list(sys.argv[1:])
        if fails:
            raise KeyboardInterrupt('stopped inside the pipeline')

    monkeypatch.setattr(basicsr.train if kind == 'train' else basicsr.test, f'{kind}_pipeline', pipeline)
    before = attribute_snapshot()
    args = argparse.Namespace(opt=str(option_file), launcher='none', auto_resume=False, debug=True, force_yml=None,
                              root=str(tmp_path))
    if fails:
        with pytest.raises(KeyboardInterrupt, match='stopped inside'):
            harness.run_pipeline(kind, args)
    else:
        harness.run_pipeline(kind, args)

    assert seen['replaced'] == set(harness.PATCHED_ATTRIBUTES)
    assert seen['argv'] == ['-opt', str(option_file), '--launcher', 'none', '--debug']
    assert seen['root'] == str(tmp_path.resolve())
    assert replaced_since(before) == set()
    for module, attribute in harness.PATCHED_ATTRIBUTES:
        assert getattr(sys.modules[module], attribute) is before[(module, attribute)], (module, attribute)
