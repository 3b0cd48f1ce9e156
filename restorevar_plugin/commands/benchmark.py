"""``basicsr benchmark -opt X.yml``: every method on every dataset; quality and cost tables, grids, report.

    basicsr benchmark -opt options/benchmark_aior.yml [--root DIR] [--force_yml key:sub=value ...] [--device cpu]

See :mod:`restorevar_plugin.benchmark.options` for the option file. Outputs under ``<root>/results/<name>/``:
``quality.md/.csv``, ``cost.md/.csv``, ``grids/``, ``images/``, ``report.html`` and the resumable ``cache/``.
Exit code 0 when every method ran, 1 when some were skipped for missing weights (the others ran and are in
the tables), 2 for a bad option file.
"""
import os
from pathlib import Path

from restorevar_plugin.benchmark.pipeline import run_benchmark

NAME = 'benchmark'
HELP = 'methods side by side: quality and cost tables, comparison grids and an HTML report under results/'


def add_arguments(parser):
    """Options of ``basicsr benchmark``."""
    parser.add_argument('-opt', required=True, help='benchmark option YAML (methods, datasets, protocol, outputs)')
    parser.add_argument('--root', default=None, help='root for results/ and relative paths in the option files '
                        '(default: the current directory)')
    parser.add_argument('--force_yml', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override options of the benchmark file, e.g. grids:images_per_dataset=2 or '
                        'methods:0:force_yml=[\'val:use_refiner=false\']')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default=None,
                        help='where the methods run (default: the option device, else auto)')


def run(args):
    """Run the benchmark; print where the outputs are and which methods were missing."""
    root = Path(args.root or os.getcwd()).resolve()
    results_dir, results = run_benchmark(args.opt, root, args.force_yml, args.device)
    missing = [result for result in results if result.missing]
    for result in missing:
        for message in result.missing:
            print(f'basicsr {NAME}: {result.label}: not run, weights missing: {message}', flush=True)
    ran = [result.label for result in results if not result.missing]
    print(f'basicsr {NAME}: {len(ran)} row(s) ({", ".join(ran)}) written to {results_dir} '
          '(quality.md, cost.md, report.html)', flush=True)
    return 1 if missing else 0
