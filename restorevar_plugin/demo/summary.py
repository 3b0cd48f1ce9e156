"""The demo's benchmark file and its summary: the per-degradation PSNR table and the three targets.

:func:`benchmark_options` turns ``benchmark.yml`` (next to this module) into a runnable ``basicsr benchmark``
file: its option-file paths made absolute and each weight slot (``vqvae``, ``transformer``, ...) replaced by a
checkpoint path; :func:`demo_method_options` gives one of its methods with the shipped checkpoints as the model
options of ``basicsr restore --demo NAME``. :func:`summarize` reads the benchmark's ``quality.csv`` back and
gives the table printed at the end of ``basicsr demo``: PSNR per method and degradation, the mean over the
held-out images, and whether RestoreVAR and PromptIR beat the degraded input and the full pipeline beats its
no-refiner ablation.
"""
import copy
import csv
from pathlib import Path
from typing import NamedTuple

import yaml

from restorevar_plugin.benchmark.options import DEGRADED_INPUT, read_method, slugify
from restorevar_plugin.benchmark.tables import read_csv_without_comments
from restorevar_plugin.demo.recipe import (
    BENCHMARK_TEMPLATE,
    CHECKPOINT_DIR,
    PACKAGE_DIR,
    shipped_weights,
)
from restorevar_plugin.demo.shipping import require_checkpoints
from restorevar_plugin.harness import OptionError

RESTOREVAR, NO_REFINER, PROMPTIR = 'RestoreVAR', 'RestoreVAR w/o refiner', 'PromptIR'
TARGETS = ((RESTOREVAR, DEGRADED_INPUT), (PROMPTIR, DEGRADED_INPUT), (RESTOREVAR, NO_REFINER))
METRIC = 'PSNR'


def benchmark_options(weights, name='demo'):
    """The demo benchmark options with absolute option files and the given weights.

    Args:
        weights (dict): ``{slot: path}`` for every slot named in ``benchmark.yml``'s ``path:`` blocks.
        name (str): The benchmark name (results go to ``results/<name>/``).

    Returns:
        dict: Options for ``basicsr benchmark``.
    """
    with open(BENCHMARK_TEMPLATE, encoding='utf-8') as handle:
        options = copy.deepcopy(yaml.safe_load(handle))
    options['name'] = name
    for method in options['methods']:
        method['opt'] = str(PACKAGE_DIR / method['opt'])
        method['path'] = {key: str(Path(weights[slot]).resolve()) for key, slot in method['path'].items()}
    return options


def demo_method_options(name, folder=None):
    """The model options of the demo benchmark's method ``name`` with the shipped checkpoints (``basicsr restore
    --demo NAME``).

    Args:
        name (str): A method label of ``benchmark.yml`` as a lower-case file name (:func:`slugify`):
            ``restorevar``, ``restorevar_w_o_refiner`` (the no-refiner ablation) or ``promptir``.
        folder (Path | None): Where the shipped files are (None: the package's ``demo/checkpoints/``).

    Returns:
        dict: BasicSR model options: the demo option file with its ``force_yml`` applied and absolute
        ``path.pretrain_*`` to the shipped files, checked against the manifest; no ``datasets``.

    Raises:
        OptionError: ``name`` is not a method of the demo benchmark (the message lists them).
        FileNotFoundError: A shipped file the method loads is missing or differs from the manifest (named).
    """
    folder = CHECKPOINT_DIR if folder is None else Path(folder)
    options = benchmark_options(shipped_weights(folder))
    methods = {slugify(entry['label']).lower(): (index, entry) for index, entry in enumerate(options['methods'])}
    if name not in methods:
        raise OptionError(f'--demo: no demo method {name!r}; the demo methods are {", ".join(methods)}')
    index, entry = methods[name]
    require_checkpoints(folder, names={Path(path).name for path in entry['path'].values()})
    return read_method(entry, index, PACKAGE_DIR, PACKAGE_DIR).model_opt


class Summary(NamedTuple):
    """``degradations`` (column order), ``psnr`` ``{(method, degradation): dB}``, ``mean`` ``{method: dB}`` over
    the degradations (each has the same held-out photographs, so this is the mean over images) and ``targets``
    ``[(better, worse, met)]``."""
    degradations: list
    psnr: dict
    mean: dict
    targets: list

    def markdown(self):
        """The PSNR table (methods x degradations + mean) and one line per target."""
        methods = list(dict.fromkeys(method for method, _ in self.psnr))
        header = ['method (PSNR dB)', *self.degradations, 'mean']
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        for method in methods:
            cells = [f'{self.psnr[(method, name)]:.2f}' if (method, name) in self.psnr else '—'
                     for name in self.degradations]
            mean = f'{self.mean[method]:.2f}' if method in self.mean else '—'
            lines.append('| ' + ' | '.join([method, *cells, mean]) + ' |')
        lines.append('')
        for better, worse, met in self.targets:
            verdict = 'n/a (a row is missing)' if met is None else ('met' if met else 'NOT met')
            lines.append(f'- target {better} > {worse} on mean PSNR: {verdict}')
        return '\n'.join(lines)


def summarize(quality_csv):
    """Read the benchmark's ``quality.csv`` into a :class:`Summary`.

    Raises:
        ValueError: The CSV has no PSNR value.
    """
    rows = read_csv_without_comments(quality_csv)
    psnr, degradations = {}, []
    for row in rows:
        if row.get('metric') != METRIC or row.get('value') in (None, ''):
            continue
        psnr[(row['method'], row['dataset'])] = float(row['value'])
        if row['dataset'] not in degradations:
            degradations.append(row['dataset'])
    if not psnr:
        raise ValueError(f'{quality_csv}: no {METRIC} value (columns: {", ".join(rows[0]) if rows else "none"})')
    mean = {}
    for method in dict.fromkeys(method for method, _ in psnr):
        values = [psnr.get((method, name)) for name in degradations]
        if all(value is not None for value in values):
            mean[method] = sum(values) / len(values)
    targets = [(better, worse, mean[better] > mean[worse] if better in mean and worse in mean else None)
               for better, worse in TARGETS]
    return Summary(degradations, psnr, mean, targets)


def write_summary(summary, path):
    """Write ``summary.markdown()`` and a CSV next to it (``path`` with ``.csv``)."""
    path = Path(path)
    path.write_text(summary.markdown() + '\n', encoding='utf-8')
    with open(path.with_suffix('.csv'), 'w', newline='', encoding='utf-8') as handle:
        writer = csv.writer(handle)
        writer.writerow(['method', *summary.degradations, 'mean'])
        for method in dict.fromkeys(method for method, _ in summary.psnr):
            writer.writerow([method, *[summary.psnr.get((method, name), '') for name in summary.degradations],
                             summary.mean.get(method, '')])
