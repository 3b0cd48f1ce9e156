"""``run_benchmark``: options -> runs -> ``quality.md/.csv``, ``cost.md/.csv``, grids and ``report.html``.

Every output file is written whole (temporary file, then rename) under ``<root>/results/<name>/``.
"""
from pathlib import Path

import torch

from restorevar_plugin.atomic_files import write_text_whole
from restorevar_plugin.benchmark.cost import MEMORY_DEFINITION, latent_diffusion_reference
from restorevar_plugin.benchmark.grids import comparison_grid, save_image_whole
from restorevar_plugin.benchmark.options import (
    DEGRADED_INPUT,
    load_benchmark_options,
    metric_info,
)
from restorevar_plugin.benchmark.provenance import collect_provenance
from restorevar_plugin.benchmark.report import (
    bullet_list,
    cost_table_html,
    paragraph,
    quality_table_html,
    report_html,
    viewer_html,
)
from restorevar_plugin.benchmark.runner import BenchmarkRun
from restorevar_plugin.benchmark.tables import (
    COST_FIELDS,
    DECIMALS,
    QUALITY_FIELDS,
    cost_markdown,
    cost_rows,
    csv_text,
    quality_csv_rows,
    quality_tables,
    table_markdown,
)
from restorevar_plugin.commands.restore import select_device

LDM_STEPS = 20
LDM_SIZE = 512
FLOP_CONVENTION = ('FLOPs = 2 x multiply-adds, counted with torch.utils.flop_counter.FlopCounterMode around one '
                   'feed_data + test call (everything the model runs for one image: for RestoreVAR encoder, '
                   'every generation scale, refiner and decoder); matrix products, convolutions and attention '
                   '(also the CPU attention kernel) are counted, element-wise operations and normalisation are not.')
RANKING_NOTE = ('Best per column in bold, second underlined (on the printed values; ↑ higher is better, ↓ lower is '
                'better); the degraded-input row is a reference and is not ranked.')


def protocol_record(spec):
    """The protocol line printed under every table (plus how the benchmark measured with it)."""
    line = spec.protocol.describe()
    if spec.extra_metrics:
        line += (f' No-reference metrics {", ".join(spec.extra_metrics)} measured on every image, with or without '
                 'GT.')
    return line


def _image_counts(results):
    return [f'{result.label}: images scored: ' + ', '.join(
        f'{name} {max(evaluation.counts.values(), default=0)}' for name, evaluation in result.evaluations.items())
        for result in results if result.evaluations]


def _missing_lines(results):
    return [f'{result.label}: weights missing, not run. {message}' for result in results for message in result.missing]


def _skipped_lines(results):
    return [f'{result.label} / {name}: skipped {path}: {reason}' for result in results
            for name, evaluation in result.evaluations.items() for path, reason in evaluation.skipped]


def _ratio_lines(results, references):
    """The latent-diffusion reference's FLOPs over each method's, counted under the same convention."""
    if len(references) < 2:
        return []
    ldm, lines = references[-1], []
    size = f'{LDM_SIZE}x{LDM_SIZE}'
    for result in results:
        if result.cost is None or not result.cost.flops:
            continue
        if result.cost.resolution != size:
            lines.append(f'{result.label} was counted at {result.cost.resolution}, the latent-diffusion reference at '
                         f'{size}: no FLOP ratio (FLOPs grow with the resolution)')
            continue
        lines.append(f'{ldm.label}: {ldm.flops / result.cost.flops:.1f}x the FLOPs of {result.label} per image '
                     f'({ldm.flops / 1e12:.4g} T vs {result.cost.flops / 1e12:.4g} T, both at {size})')
    return lines


def _method_lines(spec):
    lines = []
    for method in spec.methods:
        overrides = f'; overrides: {", ".join(method.overrides)}' if method.overrides else ''
        lines.append(f'{method.label}: {method.model_opt.get("model_type")} from {method.source}{overrides}')
    return lines


def write_quality(results_dir, spec, tables, results, provenance):
    """``quality.md`` and ``quality.csv``."""
    protocol_line = protocol_record(spec)
    parts = [f'# {spec.name}: quality\n', provenance.markdown(), '', 'Methods:', '',
             '\n'.join(f'- {line}' for line in _method_lines(spec)), '']
    for table in tables:
        parts += [f'## {table.title}\n', table_markdown(table), '', RANKING_NOTE, '', protocol_line, '']
    if not tables:
        parts += ['No method produced a score.', '']
    parts += [f'- {line}' for line in _image_counts(results) + _missing_lines(results) + _skipped_lines(results)]
    write_text_whole(results_dir / 'quality.md', '\n'.join(parts).rstrip() + '\n')
    comments = provenance.lines() + [protocol_line] + _missing_lines(results)
    write_text_whole(results_dir / 'quality.csv', csv_text(comments, QUALITY_FIELDS, quality_csv_rows(tables)))


def cost_notes(spec, results, references):
    """Lines printed under the cost table: the convention, what each column means, the LDM comparison."""
    warmup = spec.cost['warmup']
    notes = [FLOP_CONVENTION,
             'Params: every network the model holds at test time; params run per image: those read by any '
             'operation for the counted image (see the CSV networks column for the split per network).',
             'Network evaluations: sequential passes of the main network per image (RestoreVAR: one transformer '
             'pass per scale; single-pass networks: 1; latent diffusion: UNet steps).',
             f'Time: median wall time per image over every benchmark image after the first {warmup} (warm-up), '
             'CUDA synchronised.',
             MEMORY_DEFINITION,
             f'FLOPs and peak memory counted on one image of {spec.cost["dataset"]} (the benchmark resolution).',
             'Paper columns: the RestoreVAR paper\'s own figures (Tables 5, 6 of the appendix), which do not follow '
             'one convention: its RestoreVAR 1.05 TFLOPs matches the multiply-adds of transformer + refiner, its '
             'Diff-Plugin 16.08 TFLOPs is 2 x multiply-adds of 20 SD-1.5 UNet steps.']
    return notes + _ratio_lines(results, references)


def write_cost(results_dir, spec, rows, notes, provenance):
    """``cost.md`` and ``cost.csv``."""
    parts = [f'# {spec.name}: cost\n', provenance.markdown(), '', cost_markdown(rows), '']
    parts += [f'- {line}' for line in notes]
    write_text_whole(results_dir / 'cost.md', '\n'.join(parts) + '\n')
    write_text_whole(results_dir / 'cost.csv', csv_text(provenance.lines() + notes, COST_FIELDS, rows))


def panels_of(selected, results):
    """``[(label, file)]`` of one chosen image: input, each method that ran, GT (when present)."""
    panels = [('input', selected.files['input'])]
    panels += [(result.label, selected.files[result.slug]) for result in results if result.slug in selected.files]
    if 'gt' in selected.files:
        panels.append(('GT', selected.files['gt']))
    return panels


def image_row(evaluation, selected):
    """The evaluation row of a chosen image (its name ends with the file stem), or None."""
    stem = selected.stem.split('_', 1)[1]
    candidates = [position for position, row in enumerate(evaluation.rows)
                  if row['image'] == stem or row['image'].endswith(f'_{stem}')]
    if len(candidates) == 1:
        return evaluation.rows[candidates[0]]
    return evaluation.rows[selected.index] if selected.index in candidates else None


def score_caption(result, selected):
    """``'PSNR 24.67, SSIM 0.821'`` of one method on one chosen image (empty when not scored)."""
    evaluation = result.evaluations.get(selected.dataset)
    row = image_row(evaluation, selected) if evaluation is not None else None
    if row is None:
        return ''
    parts = []
    for key, value in row.items():
        info = metric_info(key)
        if info is not None and value is not None:
            parts.append(f'{info.label} {value:.{DECIMALS.get(info.label, 3)}f}')
    return ', '.join(parts)


def write_grids(results_dir, run, results):
    """``grids/<dataset>/<image>.png`` for every chosen image; returns the written paths."""
    written = []
    for name, chosen in run.selected.items():
        for selected in chosen:
            target = results_dir / 'grids' / name / f'{selected.stem}.png'
            save_image_whole(comparison_grid(panels_of(selected, results), run.spec.crops), target)
            written.append(target)
    return written


def write_report(results_dir, spec, tables, cost_table_rows, notes, run, results, provenance):
    """``report.html`` next to ``images/``."""
    sections = [('Provenance', bullet_list(provenance.lines()) + bullet_list(_method_lines(spec)))]
    for table in tables:
        sections.append((table.title, quality_table_html(table) + paragraph(RANKING_NOTE)
                         + paragraph(protocol_record(spec))
                         + bullet_list(_missing_lines(results) + _skipped_lines(results))))
    sections.append(('Cost', cost_table_html(cost_table_rows) + bullet_list(notes)))
    viewers, index = [], 0
    for name, chosen in run.selected.items():
        for selected in chosen:
            captions = {result.label: score_caption(result, selected) for result in results}
            captions['input'] = captions.get(DEGRADED_INPUT, '')
            panels = [(label, Path(path).relative_to(results_dir).as_posix(), captions.get(label, ''))
                      for label, path in panels_of(selected, results)]
            viewers.append(viewer_html(f'{name}: {selected.stem}', panels, index))
            index += 1
    if viewers:
        sections.append(('Images (buttons, slider, keys 1-9 and arrows switch the picture)', '\n'.join(viewers)))
    write_text_whole(results_dir / 'report.html', report_html(f'{spec.name}: benchmark report', sections))


def run_benchmark(option_file, root, force_yml=None, device=None):
    """Run a benchmark option file and write every output.

    Args:
        option_file (str | Path): Benchmark YAML (see :mod:`restorevar_plugin.benchmark.options`).
        root (str | Path): Root of relative paths and ``results/``.
        force_yml (list[str] | None): Overrides of the benchmark file.
        device (str | None): ``cpu`` / ``cuda`` / ``auto``; None uses the option ``device``.

    Returns:
        tuple[Path, list[MethodResult]]: The results folder and the per-method results.
    """
    spec = load_benchmark_options(option_file, root, force_yml)
    choice = device or spec.device
    torch_device = select_device(None if choice == 'auto' else choice)
    run = BenchmarkRun(spec, torch_device)
    results = run.run()
    references = latent_diffusion_reference(LDM_STEPS, LDM_SIZE) if spec.cost['ldm_reference'] else []
    checkpoints = [(result.label, path) for result in results if not result.missing for path in result.checkpoints]
    provenance = collect_provenance(spec.option_file, torch_device, checkpoints)
    tables = quality_tables(results, [*spec.protocol.metrics, *spec.extra_metrics])
    rows = cost_rows(results, references, str(torch_device), torch.get_num_threads())
    notes = cost_notes(spec, results, references)
    results_dir = run.results_dir
    write_quality(results_dir, spec, tables, results, provenance)
    write_cost(results_dir, spec, rows, notes, provenance)
    write_grids(results_dir, run, results)
    if spec.report:
        write_report(results_dir, spec, tables, rows, notes, run, results, provenance)
    return results_dir, results
