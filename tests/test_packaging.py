"""An installed wheel works outside a source checkout: its dataset metas resolve by name, ``basicsr list`` runs and
``basicsr restore --demo`` restores with the checkpoints the wheel ships.

The wheel is built from a copy of the tracked files (the checkout stays clean) and installed with ``--no-deps``
into a fresh venv whose only view of the heavy dependencies (torch, basicsr, ...) is the running interpreter's
site-packages appended through a ``.pth`` file of plain paths: nothing is downloaded, and the editable install of
the running environment is not activated (``.pth`` files of appended folders are not processed).
"""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
import restorevar_plugin
from restorevar_plugin.data.meta import default_meta_dir, load_dataset_meta
meta = load_dataset_meta('lolv1_test')
print('PACKAGE', restorevar_plugin.__file__)
print('META', meta.origin, meta.degradation)
print('DEFAULT', default_meta_dir())
'''


def tracked_copy(target):
    """Copy the files git tracks or would track (working-tree versions, ignored files left out) into ``target``."""
    command = ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard']
    listed = subprocess.run(command, cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split('\0')):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def fresh_venv(root):
    """A venv without pip that sees this interpreter's site-packages after its own; returns its python."""
    venv.create(root, with_pip=False, symlinks=True)
    python = root / 'bin' / 'python'
    purelib = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                             capture_output=True, text=True, check=True).stdout.strip()
    parents = [path for path in {*site.getsitepackages(), sysconfig.get_paths()['purelib']} if os.path.isdir(path)]
    (Path(purelib) / 'parent_site_packages.pth').write_text('\n'.join(parents) + '\n')
    return python


def test_wheel_installed_outside_the_checkout_finds_metas_runs_basicsr_list_and_restores(tmp_path):
    source = tracked_copy(tmp_path / 'source')
    env = {key: value for key, value in os.environ.items() if key not in ('PYTHONPATH', 'RESTOREVAR_META_PATH')}
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                    str(tmp_path / 'dist'), str(source)], check=True, env=env, cwd=tmp_path, timeout=300)
    wheel = next((tmp_path / 'dist').glob('restorevar_plugin-*.whl'))
    python = fresh_venv(tmp_path / 'venv')
    subprocess.run([str(python), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', str(wheel)], check=True,
                   env=env, cwd=tmp_path, timeout=300)
    shutil.rmtree(source)
    workdir = tmp_path / 'elsewhere'
    workdir.mkdir()

    probe = subprocess.run([str(python), '-c', PROBE], capture_output=True, text=True, env=env, cwd=workdir,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr
    lines = dict(line.split(' ', 1) for line in probe.stdout.splitlines())
    installed = tmp_path / 'venv'
    assert Path(lines['PACKAGE']).is_relative_to(installed)
    assert Path(lines['DEFAULT']).is_relative_to(installed) and Path(lines['DEFAULT']).name == 'datasets_meta'
    assert lines['META'] == f'{Path(lines["DEFAULT"]) / "lolv1_test.yml"} low_light'

    listed = subprocess.run([str(installed / 'bin' / 'basicsr'), 'list', 'arch', '--ours'], capture_output=True,
                            text=True, env=env, cwd=workdir, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert 'MultiScaleVQVAE' in listed.stdout and 'RestoreVARTransformer' in listed.stdout

    image = np.random.default_rng(0).integers(0, 256, size=(45, 67, 3), dtype=np.uint8)
    cv2.imwrite(str(workdir / 'photo.png'), image)
    for method in ('restorevar', 'promptir'):
        restored = subprocess.run([str(installed / 'bin' / 'basicsr'), 'restore', '--demo', method, '-i', 'photo.png',
                                   '-o', method], capture_output=True, text=True, env=env, cwd=workdir, timeout=300)
        assert restored.returncode == 0, restored.stderr
        checkpoints = Path(lines['PACKAGE']).parent / 'demo' / 'checkpoints'
        assert str(checkpoints) in restored.stdout and checkpoints.is_relative_to(installed)
        assert cv2.imread(str(workdir / method / 'photo.png')).shape == image.shape
