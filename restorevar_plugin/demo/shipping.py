"""The shipped demo checkpoints: fp16 copies of a ``--train`` run's weights and their manifest.

:func:`ship_checkpoints` writes, for every slot of :data:`restorevar_plugin.demo.recipe.WEIGHTS`, the
stage's ``params`` (or ``params_ema`` when present) as an fp16 state dict in BasicSR's ``{'params': ...}``
layout, so the files load through the normal checkpoint path (the model casts them to its own dtype), and
``manifest.json`` with each file's sha256, size, the stage and budget that produced it, the command, the
seed, the measured training time and the machine; a file's bytes depend only on its weights, so re-shipping
unchanged weights leaves the file and its sha256 as they were. :func:`verify_checkpoints` checks files against it and
:func:`require_checkpoints` refuses to go on when some do not match.
"""
import datetime
import hashlib
import json
import os
import platform
from pathlib import Path

import torch
import yaml

from restorevar_plugin.atomic_files import atomic_output
from restorevar_plugin.demo.recipe import (
    CHECKPOINT_DIR,
    MANIFEST_FILE,
    WEIGHTS,
    load_manifest,
    option_file,
    stage_by_name,
    stage_checkpoint,
)
from restorevar_plugin.demo.training import read_timings


def sha256_of(path):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _save_whole(obj, path):
    """Save text or a torch object as package data (readable by everyone), whole or not at all.

    A torch object is saved through an open handle: ``torch.save`` given a file name names the zip archive
    after it (here a random temporary name), so the same weights would get new bytes and a new sha256.
    """
    with atomic_output(path, mode=0o644) as tmp_name:
        if isinstance(obj, str):
            Path(tmp_name).write_text(obj, encoding='utf-8')
        else:
            with open(tmp_name, 'wb') as handle:
                torch.save(obj, handle)


def half_params(checkpoint):
    """``{'params': fp16 state dict}`` from a BasicSR checkpoint (``params_ema`` preferred); integer tensors kept."""
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    params = state.get('params_ema', state.get('params'))
    if params is None:
        raise ValueError(f'{checkpoint}: expected a BasicSR checkpoint with params or params_ema; got keys '
                         f'{sorted(state)}')
    return {'params': {key: value.half() if value.is_floating_point() else value for key, value in params.items()}}


def machine_description():
    """One line naming the CPU, its core count, the OS and torch."""
    cpu = platform.processor() or platform.machine()
    if os.path.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo', encoding='utf-8') as handle:
            names = [line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')]
        cpu = names[0] if names else cpu
    return (f'{cpu}, {os.cpu_count()} logical cores visible, torch {torch.__version__} with '
            f'{torch.get_num_threads()} threads, {platform.system()} {platform.release()}')


def ship_checkpoints(root, budget, note='', destination=CHECKPOINT_DIR, commands=None):
    """Write the fp16 checkpoints of a finished ``--train`` run of ``budget`` and their manifest.

    Args:
        root (Path): Root of the run's ``experiments/``.
        budget (str): The budget that was trained.
        note (str): Free text stored in the manifest (e.g. what was shortened and why).
        destination (Path): Folder of the files and ``manifest.json`` (default: the package's).
        commands (dict | None): ``{stage: command line}`` when the stages were not run by
            ``basicsr demo --train --budget <budget>`` as they stand (e.g. shortened with ``--force_yml``).

    Returns:
        dict: The manifest written.

    Raises:
        FileNotFoundError: A stage of the run has no ``*_latest.pth`` (it did not finish).
    """
    timings = read_timings(root, budget)
    files = {}
    for slot, (stage_name, file_name) in WEIGHTS.items():
        stage = stage_by_name(stage_name)
        source = stage_checkpoint(root, budget, stage)
        if not source.is_file():
            raise FileNotFoundError(f'{source} is missing: the {stage_name} stage of budget {budget} has not finished '
                                    f'(run basicsr demo --train --budget {budget})')
        target = Path(destination) / file_name
        _save_whole(half_params(source), target)
        with open(option_file(budget, stage), encoding='utf-8') as handle:
            seed = yaml.safe_load(handle).get('manual_seed')
        files[file_name] = {
            'slot': slot,
            'sha256': sha256_of(target),
            'size_bytes': target.stat().st_size,
            'dtype': 'float16',
            'stage': stage_name,
            'budget': budget,
            'option_file': f'restorevar_plugin/demo/options/{budget}/{stage_name}.yml',
            'command': (commands or {}).get(stage_name, f'basicsr demo --train --budget {budget}'),
            'seed': seed,
            'training_seconds': timings.get(stage_name, {}).get('seconds'),
            'iterations': timings.get(stage_name, {}).get('iterations'),
        }
    manifest = {
        'budget': budget,
        'machine': machine_description(),
        'created_utc': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'note': note,
        'files': files,
    }
    _save_whole(json.dumps(manifest, indent=2) + '\n', Path(destination) / MANIFEST_FILE.name)
    return manifest


def verify_checkpoints(folder=CHECKPOINT_DIR, manifest=None, names=None):
    """Check files of the manifest (``names``, default all): present, of the recorded size and sha256.

    Returns:
        list[str]: One message per problem (empty when all match).
    """
    manifest = load_manifest() if manifest is None else manifest
    problems = []
    for name, record in manifest['files'].items():
        if names is not None and name not in names:
            continue
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f'{path}: missing (recorded in {MANIFEST_FILE.name})')
        elif path.stat().st_size != record['size_bytes'] or sha256_of(path) != record['sha256']:
            problems.append(f'{path}: sha256 or size differs from {MANIFEST_FILE.name}')
    return problems


def require_checkpoints(folder=CHECKPOINT_DIR, names=None):
    """Raise unless the shipped files ``names`` (default: all of the manifest) in ``folder`` match the manifest.

    Raises:
        FileNotFoundError: Naming every missing or changed file, the manifest, and how to get the files back.
    """
    problems = verify_checkpoints(folder, names=names)
    if problems:
        raise FileNotFoundError('the shipped demo checkpoints do not match their manifest: ' + '; '.join(problems)
                                + ' (reinstall the package, or run basicsr demo --train --budget full)')
