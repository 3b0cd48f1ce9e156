"""The demo recipe: which stages train what, from which option file, and where their weights end up.

Every budget (``quick``, ``standard``, ``full``) is a folder of BasicSR option files under
``restorevar_plugin/demo/options/<budget>/``, one per stage. They share the architectures of
``options/restorevar_test.yml`` and ``options/promptir_test.yml`` and differ only in their lengths, so the
weights of any budget (and the shipped ones) load into the same benchmark methods. Stages, in order:

============ ============================================= =========================== ===========================
stage        trains                                        needs                       writes (under experiments/)
============ ============================================= =========================== ===========================
tokenizer    the multi-scale VQVAE from scratch            --                          net_vqvae_latest.pth
decoder      its decoder on continuous latents             tokenizer                   net_vqvae_latest.pth
transformer  the RestoreVAR transformer (teacher forcing)  tokenizer                   net_g_latest.pth
refiner      the latent refiner (L1 to the GT latent)      decoder, transformer        net_refiner_latest.pth
promptir     PromptIR (L1)                                 --                          net_g_latest.pth
============ ============================================= =========================== ===========================

A stage's experiment is ``demo_<budget>_<stage>``; it counts as finished when its ``*_latest.pth`` exists
(BasicSR writes that file only when training ends).
"""
import json
from pathlib import Path
from typing import NamedTuple

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
OPTIONS_DIR = PACKAGE_DIR / 'options'
CHECKPOINT_DIR = PACKAGE_DIR / 'checkpoints'
MANIFEST_FILE = CHECKPOINT_DIR / 'manifest.json'
BENCHMARK_TEMPLATE = PACKAGE_DIR / 'benchmark.yml'
BUDGETS = ('quick', 'standard', 'full')


class Stage(NamedTuple):
    """One training stage: ``name`` (also its option file's stem), ``network`` (the saved ``net_<network>``)
    and ``needs`` (stages whose weights its option file loads)."""
    name: str
    network: str
    needs: tuple


STAGES = (
    Stage('tokenizer', 'vqvae', ()),
    Stage('decoder', 'vqvae', ('tokenizer', )),
    Stage('transformer', 'g', ('tokenizer', )),
    Stage('refiner', 'refiner', ('decoder', 'transformer')),
    Stage('promptir', 'g', ()),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)

# Benchmark weight slots -> (stage whose output fills it, shipped file name).
WEIGHTS = {
    'vqvae': ('decoder', 'restorevar_vqvae.pth'),
    'tokenizer': ('tokenizer', 'restorevar_tokenizer.pth'),
    'transformer': ('transformer', 'restorevar_transformer.pth'),
    'refiner': ('refiner', 'restorevar_refiner.pth'),
    'promptir': ('promptir', 'promptir.pth'),
}


def check_budget(budget):
    """Raise ValueError unless ``budget`` is one of :data:`BUDGETS`."""
    if budget not in BUDGETS:
        raise ValueError(f'--budget must be one of {", ".join(BUDGETS)}; got {budget!r}')


def stage_by_name(name):
    """The :class:`Stage` called ``name``."""
    return STAGES[STAGE_NAMES.index(name)]


def experiment_name(budget, stage):
    """``demo_<budget>_<stage>``: the ``name`` of the stage's option file."""
    return f'demo_{budget}_{stage.name}'


def option_file(budget, stage):
    """The stage's option file of ``budget`` inside the package."""
    check_budget(budget)
    return OPTIONS_DIR / budget / f'{stage.name}.yml'


def stage_checkpoint(root, budget, stage):
    """``<root>/experiments/demo_<budget>_<stage>/models/net_<network>_latest.pth``."""
    return Path(root) / 'experiments' / experiment_name(budget, stage) / 'models' / f'net_{stage.network}_latest.pth'


def total_iterations(budget, stage):
    """``train.total_iter`` of the stage's option file."""
    with open(option_file(budget, stage), encoding='utf-8') as handle:
        return int(yaml.safe_load(handle)['train']['total_iter'])


def trained_weights(root, budget):
    """``{slot: Path}`` of a ``--train`` run's weights (see :data:`WEIGHTS`), whether present or not."""
    return {slot: stage_checkpoint(root, budget, stage_by_name(stage)) for slot, (stage, _) in WEIGHTS.items()}


def shipped_weights(folder=CHECKPOINT_DIR):
    """``{slot: Path}`` of the checkpoints shipped in the package (or of copies of them in ``folder``)."""
    return {slot: Path(folder) / file_name for slot, (_, file_name) in WEIGHTS.items()}


def load_manifest():
    """The shipped checkpoints' manifest (``manifest.json``): ``{'files': {name: {...}}, ...}``.

    Raises:
        FileNotFoundError: The manifest is not installed.
    """
    if not MANIFEST_FILE.is_file():
        raise FileNotFoundError(f'the demo checkpoints manifest {MANIFEST_FILE} is missing: reinstall the package '
                                '(pip install -e .) or train your own with basicsr demo --train')
    with open(MANIFEST_FILE, encoding='utf-8') as handle:
        return json.load(handle)
