"""Quality and cost tables from benchmark results, as data (:class:`Table`) and as markdown / CSV text.

Quality tables follow the RestoreVAR paper: Table 1 (per dataset PSNR / SSIM / LPIPS, the full-reference metrics
of the protocol, on datasets with GT) and Table 2 (MUSIQ / CLIPIQA, the no-reference metrics, with an average over
datasets). Per column the best method is **bold** and the second underlined in markdown, on the values as
printed (ties share the rank), honouring lower-is-better metrics; the "degraded input" row is a reference and is
not ranked. The CSV holds the same numbers in long form (one row per method, dataset and metric, full precision).
"""
import csv
import io
import math
from dataclasses import dataclass, field

from restorevar_plugin.benchmark.options import DEGRADED_INPUT, metric_info
from restorevar_plugin.metrics.protocols import METRICS

DECIMALS = {'PSNR': 2, 'SSIM': 3, 'LPIPS': 3, 'MUSIQ': 3, 'CLIPIQA': 3}
AVERAGE = 'Average'
MISSING = 'missing'


@dataclass
class Column:
    """One value column: a dataset (or ``Average``) and a metric label."""

    dataset: str
    metric: str

    @property
    def lower_better(self):
        """Whether smaller values win (from the metric metadata)."""
        info = metric_info(self.metric)
        return bool(info and info.lower_better)

    @property
    def decimals(self):
        """Printed decimals (the paper's: 2 for PSNR, 3 otherwise)."""
        return DECIMALS.get(self.metric, 3)


@dataclass
class Table:
    """A method x column table.

    Attributes:
        key (str): ``'table1'`` / ``'table2'``. title (str): Heading.
        columns (list[Column]): Value columns. rows (list[str]): Method labels in order.
        values (dict): ``{(method, dataset, metric): float}``; absent = not available.
        images (dict): ``{(method, dataset, metric): images scored}``.
        notes (dict): ``{method: note}`` for rows without values (e.g. missing weights).
    """

    key: str
    title: str
    columns: list
    rows: list
    values: dict
    images: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def formatted(self, method, column):
        """The printed value of a cell (``'—'`` when absent)."""
        value = self.values.get((method, column.dataset, column.metric))
        if value is None:
            return '—'
        if math.isinf(value):
            return 'inf'
        return f'{value:.{column.decimals}f}'

    def ranks(self, column):
        """``{method: 1 | 2}`` for the best and second-best printed value of ``column`` (ties share a rank)."""
        printed = {}
        for method in self.rows:
            if method == DEGRADED_INPUT or (method, column.dataset, column.metric) not in self.values:
                continue
            value = self.values[(method, column.dataset, column.metric)]
            printed[method] = value if math.isinf(value) else round(value, column.decimals)
        distinct = sorted(set(printed.values()), reverse=not column.lower_better)
        return {method: distinct.index(value) + 1 for method, value in printed.items() if distinct.index(value) < 2}


def quality_tables(results, metric_keys):
    """Table 1 (full-reference metrics, datasets with GT) and Table 2 (no-reference metrics, with an average).

    Args:
        results (list[MethodResult]): Methods then the degraded-input row.
        metric_keys (list[str]): Keys of :data:`METRICS` measured (the protocol's and those measured everywhere).

    Returns:
        list[Table]: The tables that have at least one column.
    """
    reference = [METRICS[key].label for key in metric_keys if METRICS[key].needs_reference]
    no_reference = [METRICS[key].label for key in metric_keys if not METRICS[key].needs_reference]
    datasets = []
    for result in results:
        datasets += [name for name in result.evaluations if name not in datasets]
    values, images, notes = {}, {}, {}
    for result in results:
        if result.missing:
            notes[result.label] = MISSING
        for name, evaluation in result.evaluations.items():
            for label, mean in evaluation.means.items():
                info = metric_info(label)
                if info is not None and mean is not None:
                    values[(result.label, name, info.label)] = float(mean)
                    images[(result.label, name, info.label)] = int(evaluation.counts.get(label, 0))
    labels = [result.label for result in results]
    tables = []
    columns = [Column(name, metric) for name in datasets for metric in reference
               if any((label, name, metric) in values for label in labels)]
    if columns:
        tables.append(Table('table1', 'Table 1: full-reference quality (paper Table 1 shape)', columns, labels,
                            values, images, notes))
    columns = [Column(name, metric) for name in datasets for metric in no_reference
               if any((label, name, metric) in values for label in labels)]
    if columns:
        table2_values = {key: value for key, value in values.items() if key[2] in no_reference}
        for metric in no_reference:
            metric_datasets = [column.dataset for column in columns if column.metric == metric]
            for label in labels:
                scores = [table2_values.get((label, name, metric)) for name in metric_datasets]
                if scores and all(score is not None for score in scores):
                    table2_values[(label, AVERAGE, metric)] = sum(scores) / len(scores)
        columns += [Column(AVERAGE, metric) for metric in no_reference
                    if any((label, AVERAGE, metric) in table2_values for label in labels)]
        tables.append(Table('table2', 'Table 2: no-reference quality (paper Table 2 shape)', columns, labels,
                            table2_values, images, notes))
    return tables


def _markdown_cell(table, method, column, ranks):
    text = table.formatted(method, column)
    rank = ranks.get(method)
    if rank == 1:
        return f'**{text}**'
    if rank == 2:
        return f'<u>{text}</u>'
    return text


def _header_label(column):
    info = metric_info(column.metric)
    arrow = '↓' if column.lower_better else '↑'
    unit = f' ({info.unit})' if info and info.unit else ''
    return f'{column.metric}{unit} {arrow}'


def table_markdown(table):
    """The table as markdown: a dataset header row, a metric header row, one row per method."""
    ranks = {index: table.ranks(column) for index, column in enumerate(table.columns)}
    lines = ['| Method | ' + ' | '.join(column.dataset for column in table.columns) + ' |',
             '|---|' + '---:|' * len(table.columns),
             '| | ' + ' | '.join(_header_label(column) for column in table.columns) + ' |']
    for method in table.rows:
        if table.notes.get(method) == MISSING:
            cells = [MISSING] * len(table.columns)
        else:
            cells = [_markdown_cell(table, method, column, ranks[index]) for index, column in enumerate(table.columns)]
        label = f'*{method}*' if method == DEGRADED_INPUT else method
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


QUALITY_FIELDS = ['table', 'method', 'dataset', 'metric', 'value', 'images', 'lower_better', 'rank']


def quality_csv_rows(tables):
    """Long-form rows (dicts with :data:`QUALITY_FIELDS`) of every table cell that has a value."""
    rows = []
    for table in tables:
        for column in table.columns:
            ranks = table.ranks(column)
            for method in table.rows:
                value = table.values.get((method, column.dataset, column.metric))
                if value is None:
                    continue
                rows.append({'table': table.key, 'method': method, 'dataset': column.dataset, 'metric': column.metric,
                             'value': repr(float(value)), 'images': table.images.get((method, column.dataset,
                                                                                     column.metric), ''),
                             'lower_better': column.lower_better, 'rank': ranks.get(method, '')})
    return rows


def csv_text(comment_lines, fields, rows):
    """CSV with ``#`` comment lines first (provenance, protocol), then a header and ``rows``."""
    buffer = io.StringIO()
    for line in comment_lines:
        buffer.write(f'# {line}\n')
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_csv_without_comments(path):
    """Rows (dicts) of a CSV written by :func:`csv_text`, comment lines skipped."""
    with open(path, encoding='utf-8', newline='') as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith('#')))


COST_FIELDS = ['method', 'params_M', 'params_run_per_image_M', 'networks', 'resolution', 'TFLOPs_per_image',
               'network_evaluations_per_image', 'time_per_image_s', 'timed_images', 'peak_memory_per_image_MiB',
               'device', 'threads', 'paper_time_s', 'paper_TFLOPs', 'paper_params_M', 'paper_source']


def _networks_text(networks):
    return '; '.join(f'{name} {total / 1e6:.2f}M (ran {run / 1e6:.2f}M)' for name, (total, run) in networks.items())


def cost_rows(results, references, device, threads):
    """One dict per method (and per latent-diffusion reference) with :data:`COST_FIELDS`; numbers as floats.

    Args:
        results (list[MethodResult]): The methods (the degraded-input row and missing methods have no cost).
        references (list[ReferenceCost]): Rows counted without running (meta device).
        device (str): Where the methods ran. threads (int): ``torch.get_num_threads()``.
    """
    rows = []
    for result in results:
        if result.cost is None and not result.missing:
            continue
        paper = result.paper or {}
        row = {'method': result.label, 'device': device, 'threads': threads,
               'paper_time_s': paper.get('time_s'), 'paper_TFLOPs': paper.get('tflops'),
               'paper_params_M': paper.get('params_m'), 'paper_source': paper.get('source')}
        if result.missing:
            row['networks'] = MISSING
        else:
            cost = result.cost
            row.update(params_M=cost.params / 1e6, params_run_per_image_M=cost.params_run / 1e6,
                       networks=_networks_text(cost.networks), resolution=cost.resolution,
                       TFLOPs_per_image=cost.flops / 1e12, network_evaluations_per_image=cost.evaluations,
                       time_per_image_s=cost.time_s, timed_images=cost.timed_images,
                       peak_memory_per_image_MiB=cost.peak_memory_mib)
        rows.append(row)
    for reference in references:
        paper = reference.paper or {}
        rows.append({'method': reference.label, 'params_M': reference.params / 1e6,
                     'params_run_per_image_M': reference.params / 1e6, 'networks': 'UNet2DConditionModel (meta)',
                     'resolution': reference.resolution, 'TFLOPs_per_image': reference.flops / 1e12,
                     'network_evaluations_per_image': reference.evaluations, 'device': 'meta (counted, not run)',
                     'paper_time_s': paper.get('time_s'), 'paper_TFLOPs': paper.get('tflops'),
                     'paper_params_M': paper.get('params_m'), 'paper_source': paper.get('source')})
    return rows


COST_COLUMNS = [  # (field, markdown header, format)
    ('method', 'Method', '{}'),
    ('params_M', 'Params (M)', '{:.2f}'),
    ('params_run_per_image_M', 'Params run per image (M)', '{:.2f}'),
    ('resolution', 'Resolution', '{}'),
    ('TFLOPs_per_image', 'TFLOPs / image', '{:.4g}'),
    ('network_evaluations_per_image', 'Network evaluations / image', '{}'),
    ('time_per_image_s', 'Time / image (s, median)', '{:.4f}'),
    ('peak_memory_per_image_MiB', 'Peak memory / image (MiB, tensors above weights)', '{:.1f}'),
    ('device', 'Device', '{}'),
    ('threads', 'Threads', '{}'),
    ('paper_time_s', 'Paper: time (s)', '{}'),
    ('paper_TFLOPs', 'Paper: TFLOPs', '{}'),
    ('paper_params_M', 'Paper: params (M)', '{}'),
    ('paper_source', 'Paper: source', '{}'),
]


def cost_cell(row, field_name, pattern):
    """The printed value of a cost-table cell (``'—'`` when absent)."""
    value = row.get(field_name)
    if value is None or value == '':
        measured = field_name != 'method' and not field_name.startswith('paper_')
        return MISSING if measured and row.get('networks') == MISSING else '—'
    return pattern.format(value)


def cost_markdown(rows):
    """The cost rows as a markdown table (paper figures in their own labelled columns)."""
    lines = ['| ' + ' | '.join(header for _, header, _ in COST_COLUMNS) + ' |',
             '|---|' + '---:|' * (len(COST_COLUMNS) - 1)]
    for row in rows:
        lines.append('| ' + ' | '.join(cost_cell(row, name, pattern) for name, _, pattern in COST_COLUMNS) + ' |')
    return '\n'.join(lines)
