"""``basicsr demo --train``: run every stage of a budget through ``basicsr train``, with progress and an ETA.

Each stage is a child process ``python -m restorevar_plugin.cli train -opt <stage file> --root ROOT`` (the
normal pipeline, :func:`restorevar_plugin.harness.run_pipeline`, with a logger and memory of its own). Its
log lines ``iter: N`` move one tqdm bar whose total is the iterations of every stage still to train, so the
ETA covers the whole run. Finished stages (their ``*_latest.pth`` exists) are reused unless ``fresh``;
``<root>/experiments/demo_<budget>_timings.json`` records each stage's wall time for the manifest.
"""
import collections
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from restorevar_plugin.demo.recipe import (
    STAGES,
    experiment_name,
    option_file,
    stage_checkpoint,
    total_iterations,
)

ITER_PATTERN = re.compile(r'iter:\s*([\d,]+)')
LOG_TAIL = 30


class StageFailed(RuntimeError):
    """A stage's ``basicsr train`` exited with an error; the message holds the end of its output."""


def timings_file(root, budget):
    """``<root>/experiments/demo_<budget>_timings.json``."""
    return Path(root) / 'experiments' / f'demo_{budget}_timings.json'


def read_timings(root, budget):
    """``{stage: {'seconds': float, 'iterations': int}}`` recorded by earlier runs (empty when none)."""
    path = timings_file(root, budget)
    if not path.is_file():
        return {}
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def _write_timings(root, budget, timings):
    path = timings_file(root, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w', encoding='utf-8') as handle:
        json.dump(timings, handle, indent=2)
    os.replace(tmp, path)


def _run_stage(stage, budget, root, bar):
    """Train one stage in a child process, advancing ``bar`` by its logged iterations; returns seconds."""
    command = [sys.executable, '-m', 'restorevar_plugin.cli', 'train', '-opt', str(option_file(budget, stage)),
               '--root', str(root)]
    tail = collections.deque(maxlen=LOG_TAIL)
    done = 0
    start = time.time()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=dict(os.environ, PYTHONUNBUFFERED='1')) as child:
        for line in child.stdout:
            tail.append(line.rstrip())
            match = ITER_PATTERN.search(line)
            if match and 'INFO: [' in line:
                reached = int(match.group(1).replace(',', ''))
                bar.update(max(0, reached - done))
                done = max(done, reached)
        returncode = child.wait()
    if returncode != 0:
        raise StageFailed(f'stage {stage.name} ({" ".join(command)}) exited with {returncode}; its last lines:\n'
                          + '\n'.join(tail))
    bar.update(max(0, total_iterations(budget, stage) - done))
    return time.time() - start


def train_budget(budget, root, fresh=False, stages=STAGES):
    """Train every stage of ``budget`` not yet finished under ``root`` (all of them when ``fresh``).

    Args:
        budget (str): ``quick``, ``standard`` or ``full``.
        root (Path): Root of ``experiments/``.
        fresh (bool): Retrain finished stages too (BasicSR archives their old experiment folders).
        stages (Sequence[Stage]): The stages, in dependency order.

    Returns:
        dict: ``{stage: {'seconds', 'iterations', 'reused'}}`` of this run.

    Raises:
        StageFailed: A stage's training failed (later stages are not run).
    """
    root = Path(root)
    to_train = [stage for stage in stages if fresh or not stage_checkpoint(root, budget, stage).is_file()]
    for stage in stages:
        if stage not in to_train:
            print(f'basicsr demo: {stage.name}: reusing {stage_checkpoint(root, budget, stage)} '
                  '(--fresh retrains)', flush=True)
    timings = read_timings(root, budget)
    report = {stage.name: dict(timings.get(stage.name, {}), reused=True) for stage in stages if stage not in to_train}
    total = sum(total_iterations(budget, stage) for stage in to_train)
    with tqdm(total=total, desc=f'demo {budget}', unit='it', dynamic_ncols=True, file=sys.stdout) as bar:
        for stage in to_train:
            bar.set_postfix_str(f'{stage.name} ({experiment_name(budget, stage)})')
            seconds = _run_stage(stage, budget, root, bar)
            timings[stage.name] = {'seconds': round(seconds, 1), 'iterations': total_iterations(budget, stage)}
            _write_timings(root, budget, timings)
            report[stage.name] = dict(timings[stage.name], reused=False)
    return report
