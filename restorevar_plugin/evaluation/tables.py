"""Tables of a :class:`~restorevar_plugin.evaluation.loop.DatasetEvaluation`: log text, CSV and markdown.

Each carries the protocol record (``protocol.describe()``), how many images were skipped and how many
each metric could not score. Files are written whole or not at all (temporary file, then rename).
"""
import csv
import io

from restorevar_plugin.atomic_files import write_text_whole
from restorevar_plugin.metrics.protocols import METRICS

NOT_AVAILABLE = 'n/a'


def notes(evaluation):
    """Lines stating what the numbers leave out and how they were measured (the protocol record last)."""
    lines = [f'{len(evaluation.rows)} images scored, {len(evaluation.skipped)} skipped']
    lines += [f'skipped {name}: {reason}' for name, reason in evaluation.skipped]
    missing = {label: count for label, count in evaluation.not_scored().items() if count}
    if missing:
        lines.append('n/a (could not be computed, left out of the mean): '
                     + ', '.join(f'{label} on {count} image{"s" * (count != 1)}' for label, count in missing.items()))
    if evaluation.timing_ms:
        lines.append('time per image (ms): ' + ', '.join(f'{step} {value:.1f}'
                                                         for step, value in evaluation.timing_ms.items()))
    lines.append(evaluation.protocol.describe())
    return lines


def _number(value):
    return NOT_AVAILABLE if value is None else f'{value:.10g}'


def metrics_csv_text(evaluation):
    """The CSV: ``#`` comment lines (:func:`notes`), then ``image, <labels>, time_s`` per image and a ``mean`` row.

    A metric that does not apply to an image (PSNR without GT) is empty; one that failed is ``n/a``.
    """
    buffer = io.StringIO()
    for line in notes(evaluation):
        buffer.write(f'# {line}\n')
    labels = evaluation.labels
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['image', *labels, 'time_s'])
    for row in evaluation.rows:
        writer.writerow([row['image'], *(_number(row[label]) if label in row else '' for label in labels),
                         f'{row["time_s"]:.6g}'])
    mean_time = sum(row['time_s'] for row in evaluation.rows) / max(len(evaluation.rows), 1)
    writer.writerow(['mean', *(_number(evaluation.means.get(label)) for label in labels), f'{mean_time:.6g}'])
    return buffer.getvalue()


def read_metrics_csv(path):
    """The rows of a file written by :func:`write_metrics_csv` as dicts of strings (comment lines dropped)."""
    with open(path, newline='', encoding='utf-8') as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith('#')))


def write_metrics_csv(evaluation, path):
    """Write :func:`metrics_csv_text` to ``path`` whole."""
    write_text_whole(path, metrics_csv_text(evaluation))


def _header(label):
    info = METRICS.get(label)
    if info is None:
        return label
    arrow = '↓' if info.lower_better else '↑'
    return f'{info.label}{f" ({info.unit})" if info.unit else ""} {arrow}'


def metrics_markdown_text(evaluation):
    """A markdown section: a one-row table of the means (with images scored and skipped), then :func:`notes`."""
    labels = evaluation.labels
    header = ['images', 'skipped', *(_header(label) for label in labels)]
    values = [str(len(evaluation.rows)), str(len(evaluation.skipped)),
              *(NOT_AVAILABLE if label not in evaluation.means else f'{evaluation.means[label]:.4f}'
                for label in labels)]
    lines = [f'## {evaluation.dataset}', '', '| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header), '| ' + ' | '.join(values) + ' |', '']
    lines += [f'- {line}' for line in notes(evaluation)[1:]]
    return '\n'.join(lines) + '\n'


def write_metrics_markdown(evaluation, path):
    """Write :func:`metrics_markdown_text` to ``path`` whole."""
    write_text_whole(path, metrics_markdown_text(evaluation))


def log_text(evaluation, best=None):
    """The validation log: a line per metric mean (with the best value when ``best`` is BasicSR's
    ``best_metric_results[dataset]``), then :func:`notes`."""
    lines = [f'Validation {evaluation.dataset}']
    for label in evaluation.labels:
        value = evaluation.means.get(label)
        line = f'\t # {label}: {NOT_AVAILABLE if value is None else f"{value:.4f}"}'
        if best and label in best and value is not None:
            line += f'\tBest: {best[label]["val"]:.4f} @ {best[label]["iter"]} iter'
        lines.append(line)
    lines += [f'\t # {line}' for line in notes(evaluation)]
    return '\n'.join(lines)
