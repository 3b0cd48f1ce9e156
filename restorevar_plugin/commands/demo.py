"""``basicsr demo``: RestoreVAR, its no-refiner ablation and PromptIR restoring the held-out demo photographs.

    basicsr demo [--root DIR]                                    # the shipped checkpoints
    basicsr demo --train --budget quick|standard|full [--fresh]  # retrain every stage first, then benchmark

Without ``--train`` the checkpoints shipped in ``restorevar_plugin/demo/checkpoints/`` (checked against their
manifest) are benchmarked; with it every stage of the budget (:mod:`restorevar_plugin.demo.recipe`) is trained
through ``basicsr train`` under ``<root>/experiments/demo_<budget>_*`` (finished stages reused unless
``--fresh``), and those weights are benchmarked. The benchmark (``basicsr benchmark``) writes
``<root>/results/demo/`` (or ``demo_<budget>`` after ``--train``): quality and cost tables (markdown and CSV),
comparison grids and ``report.html``; the PSNR table per degradation and the targets are printed at the end
and saved as ``summary.md`` / ``summary.csv``. ``--ship`` (with ``--train``) copies the trained weights into the
package as the new shipped checkpoints (fp16, with their manifest).
"""
import os
from pathlib import Path

import yaml

from restorevar_plugin.atomic_files import write_text_whole
from restorevar_plugin.demo.recipe import (
    BUDGETS,
    MANIFEST_FILE,
    shipped_weights,
    trained_weights,
)
from restorevar_plugin.demo.shipping import require_checkpoints, ship_checkpoints
from restorevar_plugin.demo.training import StageFailed, train_budget

NAME = 'demo'
HELP = 'restore the held-out demo photographs with RestoreVAR and PromptIR (shipped or retrained) and benchmark them'


def add_arguments(parser):
    """Options of ``basicsr demo``."""
    parser.add_argument('--train', action='store_true', help='retrain every stage from scratch before benchmarking')
    parser.add_argument('--budget', choices=BUDGETS, default=None,
                        help='with --train: quick (<= 2 min on 2 cores), standard (<= 10 min) or full (<= 90 min, '
                        'the recipe of the shipped checkpoints)')
    parser.add_argument('--fresh', action='store_true', help='with --train: retrain stages that already finished')
    parser.add_argument('--ship', action='store_true',
                        help='with --train: make the trained weights the package\'s shipped checkpoints (fp16)')
    parser.add_argument('--root', default=None, help='root of experiments/ and results/ (default: the current '
                        'directory)')


def _write_options(options, path):
    """Write an option dict as YAML, whole or not at all."""
    write_text_whole(path, yaml.safe_dump(options, sort_keys=False))


def run(args):
    """Train (when asked), benchmark and print the per-degradation table; exit code 0, 1 when a stage or a
    method failed, 2 for bad arguments."""
    if not args.train and (args.budget or args.fresh or args.ship):
        print('basicsr demo: error: --budget, --fresh and --ship go with --train', flush=True)
        return 2
    if args.train and args.budget is None:
        print(f'basicsr demo: error: --train needs --budget ({"|".join(BUDGETS)})', flush=True)
        return 2
    # Imported here so that the other subcommands never depend on the benchmark package.
    from restorevar_plugin.benchmark.pipeline import run_benchmark
    from restorevar_plugin.demo.summary import (
        benchmark_options,
        summarize,
        write_summary,
    )

    root = Path(args.root or os.getcwd()).resolve()
    if args.train:
        try:
            train_budget(args.budget, root, fresh=args.fresh)
        except StageFailed as error:
            print(f'basicsr demo: error: {error}', flush=True)
            return 1
        weights, name = trained_weights(root, args.budget), f'demo_{args.budget}'
        if args.ship:
            ship_checkpoints(root, args.budget)
            print(f'basicsr demo: shipped the {args.budget} weights with {MANIFEST_FILE}', flush=True)
    else:
        require_checkpoints()
        weights, name = shipped_weights(), 'demo'
    options_file = root / 'results' / f'{name}_benchmark.yml'
    _write_options(benchmark_options(weights, name), options_file)
    print(f'basicsr demo: benchmarking with {options_file}', flush=True)
    results_dir, results = run_benchmark(options_file, root)
    summary = summarize(results_dir / 'quality.csv')
    write_summary(summary, results_dir / 'summary.md')
    print(f'\nHeld-out demo photographs, PSNR (dB) per degradation ({results_dir}: quality.md, cost.md, grids/, '
          'report.html, summary.md):\n', flush=True)
    print(summary.markdown(), flush=True)
    if not args.train:
        print('\nRestore your own images with these checkpoints: basicsr restore --demo restorevar|promptir '
              '-i IMAGE_OR_FOLDER -o OUTPUT_FOLDER', flush=True)
    missing = [message for result in results for message in result.missing]
    for message in missing:
        print(f'basicsr demo: not run, weights missing: {message}', flush=True)
    return 1 if missing else 0
