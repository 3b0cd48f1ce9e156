"""``basicsr check-data``: what a dataset entry will read, and every broken pair, before a run starts.

    basicsr check-data -opt options/train.yml [--root DIR]      # every plugin dataset entry of an option file
    basicsr check-data -meta NAME [NAME ...] --root DATA_ROOT   # dataset metas against a data root
    basicsr check-data --list                                   # the dataset metas found, and where

For each meta it prints the pairs found (for an entry whose ``meta`` is missing, those of its
``fallback_meta``, as the run would use), the LQ files without (or with more than one) GT, names that
do not follow the pairing rule, list entries pointing at missing files and GT files no pair uses; it
then reads the images (all, or ``--limit`` per meta) and reports unreadable files, LQ/GT size
mismatches and the documented conversions applied (16-bit, gray, alpha), and warns about images that,
at the size the metrics will see them (after the entry's transform), are smaller than a metric can score
(:mod:`restorevar_plugin.metrics.minimum_sizes`): the metrics of the option file (``val.protocol`` changed by
``val.metrics``) for its val/test entries; with ``-meta``, the native size against the 7x7 SSIM window of
the paper protocol. It ends with the pairs per dataset and degradation, the sampling share of each degradation,
and paths listed twice.

Exit code: 0 when every pair is usable (warnings allowed), 1 when any pair or folder is broken,
2 for bad usage or an option/meta file that cannot be loaded.
"""
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import yaml

from restorevar_plugin.data.balanced_sampling import BalancedDraw
from restorevar_plugin.data.image_io import ImageReader, ImageReadError
from restorevar_plugin.data.meta import (
    DatasetLayoutError,
    MetaSchemaError,
    available_metas,
    load_dataset_meta,
    scan_pairs,
)
from restorevar_plugin.data.multi_degradation_paired_dataset import (
    paired_dataset_settings,
)
from restorevar_plugin.data.synthetic_degradation_dataset import (
    SyntheticDegradationDataset,
)
from restorevar_plugin.evaluation import configured_metrics
from restorevar_plugin.harness import resolve_option_paths
from restorevar_plugin.metrics.minimum_sizes import (
    metric_requirement,
    strictest_requirement,
)

NAME = 'check-data'
HELP = 'check dataset folders and pairing rules: pairs found, orphans, unreadable files, size mismatches'
PAIRED_TYPE = 'MultiDegradationPairedDataset'
META_ONLY_REQUIREMENT = metric_requirement('ssim', {'type': 'calculate_ssim_skimage'})
SYNTHETIC_TYPE = 'SyntheticDegradationDataset'


def add_arguments(parser):
    """Options of ``basicsr check-data``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('-opt', metavar='YML', help='option file whose dataset entries are checked')
    source.add_argument('-meta', nargs='+', metavar='NAME', help='dataset meta names or files to check')
    source.add_argument('--list', action='store_true', help='list the dataset metas found and exit')
    parser.add_argument('--root', metavar='DIR',
                        help='with -meta: the data root (required); with -opt: the folder relative dataset paths '
                             'resolve against (default: the current directory)')
    parser.add_argument('--meta-dir', action='append', default=[], metavar='DIR',
                        help='extra folder searched first for meta names (repeatable)')
    parser.add_argument('--limit', type=int, default=None, metavar='N',
                        help='read at most N pairs per meta, evenly spread (0: do not read; default: all)')
    parser.add_argument('--show', type=int, default=10, metavar='N', help='files listed per problem kind (default 10)')


@dataclass
class MetaCheck:
    """What checking one meta of one dataset entry found."""
    entry: str
    meta: object
    report: object = None
    layout_error: str = ''
    read: int = 0
    unreadable: list = field(default_factory=list)
    size_mismatch: list = field(default_factory=list)
    conversions: dict = field(default_factory=lambda: defaultdict(list))
    format_mismatch: list = field(default_factory=list)
    too_small: list = field(default_factory=list)

    def broken(self, allow_size_mismatch=False):
        """Number of broken pairs/folders (each counts once per problem)."""
        count = len(self.report.problems()) if self.report else 0
        mismatches = 0 if allow_size_mismatch else len(self.size_mismatch)
        return count + bool(self.layout_error) + len(self.unreadable) + mismatches


def format_table(headers, rows):
    """Left-aligned text table with a dashed rule under the header."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def _evenly_spread(pairs, limit):
    if limit is None or limit >= len(pairs):
        return pairs
    if limit <= 0:
        return []
    return pairs[::math.ceil(len(pairs) / limit)]


def read_pairs(check, pairs, reader, transform=None, requirement=None):
    """Read every pair in ``pairs`` and record unreadable files, size mismatches and conversions in ``check``.

    With a :class:`~restorevar_plugin.metrics.minimum_sizes.SizeRequirement`, also the files whose size after
    ``transform`` (a PairedTransform; None: the native size) is below it. A file shared by several pairs
    (RESIDE: one GT for 35 hazy images) is read and reported once.
    """
    seen = {}
    for pair in pairs:
        infos = []
        for path in (pair.lq_path, pair.gt_path):
            if path is None:
                continue
            if path not in seen:
                try:
                    seen[path] = reader.read_with_info(path)[1]
                except ImageReadError as error:
                    seen[path] = None
                    check.unreadable.append(str(error))
                for note in seen[path].conversions() if seen[path] else []:
                    check.conversions[note].append(path)
                if seen[path] is not None and requirement is not None:
                    _check_size(check, path, seen[path], transform, requirement)
            if seen[path] is not None:
                infos.append(seen[path])
        check.read += 1
        if len(infos) == 2:
            lq, gt = infos
            if (lq.height, lq.width) != (gt.height, gt.width):
                check.size_mismatch.append(f'{pair.lq_path} is {lq.height}x{lq.width}, {pair.gt_path} is '
                                           f'{gt.height}x{gt.width}')
            if (lq.channels, lq.bit_depth) != (gt.channels, gt.bit_depth):
                check.format_mismatch.append(f'{pair.lq_path} ({lq.channels} ch, {lq.bit_depth}-bit) vs '
                                             f'{pair.gt_path} ({gt.channels} ch, {gt.bit_depth}-bit)')


def _check_size(check, path, info, transform, requirement):
    height, width = (info.height, info.width) if transform is None else transform.output_size(info.height,
                                                                                                info.width)
    if min(height, width) < requirement.side:
        resized = (height, width) != (info.height, info.width)
        after = f', {height}x{width} after transform {transform.name}' if resized else ''
        check.too_small.append(f'{path} is {info.height}x{info.width}{after}')


def check_meta(entry, meta, data_root, limit, reader, transform=None, requirement=None):
    """Scan and read one meta (see :func:`read_pairs`); layout errors are recorded, not raised."""
    check = MetaCheck(entry, meta)
    try:
        check.report = scan_pairs(meta, data_root)
    except (DatasetLayoutError, MetaSchemaError) as error:
        check.layout_error = str(error)
        return check
    read_pairs(check, _evenly_spread(check.report.pairs, limit), reader, transform, requirement)
    return check


def _listing(title, items, show):
    if not items:
        return []
    lines = [f'  {title}: {len(items)}']
    lines += [f'    {item}' for item in items[:show]]
    if len(items) > show:
        lines.append(f'    ... and {len(items) - show} more')
    return lines


def describe_entry(entry, checks, shares, allow_size_mismatch, show, requirement=None):
    """Text report for one dataset entry: a per-meta table, the pairs per dataset/degradation, problems, warnings.

    ``requirement``: the :class:`~restorevar_plugin.metrics.minimum_sizes.SizeRequirement` the images were
    checked against (named in the warning about images smaller than it).
    """
    rows = []
    for c in checks:
        r = c.report
        if r is None:
            rows.append([c.meta.name, c.meta.dataset, c.meta.degradation, c.meta.split, 'ERROR'] + ['-'] * 9)
            continue
        rows.append([c.meta.name, c.meta.dataset, c.meta.degradation, c.meta.split, len(r.pairs), len(r.missing_gt),
                     len(r.unmatched), len(r.ambiguous_gt), len(r.missing_lq), len(r.orphan_gt), c.read,
                     len(c.unreadable), len(c.size_mismatch), sum(len(v) for v in c.conversions.values())])
    lines = [f'== {entry}', format_table(
        ['meta', 'dataset', 'degradation', 'split', 'pairs', 'no GT', 'bad name', 'ambiguous', 'no LQ', 'orphan GT',
         'read', 'unreadable', 'size mismatch', 'converted'], rows)]
    counts = Counter((p.dataset, p.degradation) for c in checks if c.report for p in c.report.pairs)
    if counts:
        share_rows = [[dataset, degradation, count, f'{100 * shares[degradation]:.1f}%']
                      for (dataset, degradation), count in sorted(counts.items())]
        lines += ['', format_table(['dataset', 'degradation', 'pairs', 'share of items (degradation)'], share_rows)]
    problems, warnings = [], []
    for c in checks:
        tag = f'[{c.meta.name}]'
        if c.layout_error:
            problems.append(f'  {tag} {c.layout_error}')
        if c.report:
            by_kind = defaultdict(list)
            for kind, message in c.report.problems():
                by_kind[kind].append(message)
            for kind, messages in by_kind.items():
                problems += _listing(f'{tag} {kind}', messages, show)
            warnings += _listing(f'{tag} GT files no pair uses', c.report.orphan_gt, show)
            warnings += _listing(f'{tag} listed more than once', c.report.duplicates, show)
            expected = c.meta.expected_pairs
            if expected and len(c.report.pairs) != expected:
                warnings.append(f'  {tag} {len(c.report.pairs)} pairs found; the official release has {expected}')
        problems += _listing(f'{tag} unreadable', c.unreadable, show)
        (warnings if allow_size_mismatch else problems).extend(
            _listing(f'{tag} LQ/GT size mismatch', c.size_mismatch, show))
        for note, paths in sorted(c.conversions.items()):
            warnings += _listing(f'{tag} converted on read ({note})', paths, show)
        warnings += _listing(f'{tag} LQ and GT differ in channels or bit depth', c.format_mismatch, show)
        if requirement is not None:
            warnings += _listing(f'{tag} smaller than the metrics can score (at least {requirement.side} px per side '
                                 f'for {requirement.reason}); the metric would fail or give nan', c.too_small, show)
    if problems:
        lines += ['', 'BROKEN:'] + problems
    if warnings:
        lines += ['', 'warnings:'] + warnings
    return '\n'.join(lines)


def item_shares(pairs, settings):
    """``{degradation: share of items}``: task-balanced (``-meta`` and ``balance: degradation``) or by pair count."""
    if not pairs:
        return {}
    labels = [p.degradation for p in pairs]
    if settings is None or settings.balance == 'degradation':
        return BalancedDraw(labels, settings.degradation_weights if settings else None).shares()
    return {label: count / len(labels) for label, count in Counter(labels).items()}


def _duplicate_lines(checks, show):
    owners = defaultdict(set)
    for c in checks:
        for pair in (c.report.pairs if c.report else []):
            owners[pair.lq_path].add(f'{c.entry}:{c.meta.name}')
    shared = [f'{path} ({", ".join(sorted(places))})' for path, places in owners.items() if len(places) > 1]
    if not shared:
        return []
    return ['across entries:'] + _listing('degraded files used by more than one entry/meta (overlap)', shared, show)


def _dataset_blocks(datasets):
    """``[(label, block, measured)]``: every dataset entry, and the dataset blocks nested in wrappers (an
    ``InContextPairedDataset``'s ``query`` and ``context``, a ``ConcatenatedDataset``'s ``parts``). ``measured``:
    the images are scored by ``val.metrics`` (val/test entries, not their context pools)."""
    blocks = []

    def visit(label, block, phase, measured):
        block = {key: value for key, value in block.items() if key != 'repeat'}
        blocks.append((f'{label} ({block.get("type")})', dict(block, phase=phase), measured))
        for key in ('query', 'context'):
            if isinstance(block.get(key), dict):
                visit(f'{label}.{key}', block[key], phase, measured and key == 'query')
        for index, part in enumerate(block.get('parts') or []):
            visit(f'{label}.parts[{index}]', part, phase, measured)

    for key in sorted(datasets):
        phase = key.split('_')[0]
        visit(f'datasets.{key}', datasets[key], phase, phase in ('val', 'test'))
    return blocks


def _entries_from_options(args):
    """``[(label, settings, note, requirement)]`` for the dataset entries of ``-opt`` (settings None: nothing to
    read; requirement: the strictest image size ``val.metrics`` need, for val/test entries, else None).

    Raises:
        MetaSchemaError: No ``datasets`` section, or no entry of the plugin's dataset types.
        ValueError: An invalid plugin dataset entry.
    """
    with open(args.opt, encoding='utf-8') as handle:
        opt = yaml.safe_load(handle)
    if not isinstance(opt, dict) or not isinstance(opt.get('datasets'), dict):
        raise MetaSchemaError(f'{args.opt}: no "datasets" section')
    resolve_option_paths(opt, args.root or os.getcwd())
    requirement = strictest_requirement(configured_metrics(opt.get('val') or {}))
    entries = []
    for label, dataset_opt, scored in _dataset_blocks(opt['datasets']):
        measured = requirement if scored else None
        if dataset_opt.get('type') == PAIRED_TYPE:
            if args.meta_dir:
                dataset_opt['meta_dirs'] = list(args.meta_dir) + list(dataset_opt.get('meta_dirs') or [])
            entries.append((label, paired_dataset_settings(dataset_opt), '', measured))
        elif dataset_opt.get('type') == SYNTHETIC_TYPE:
            dataset = SyntheticDegradationDataset(dataset_opt)
            entries.append((label, None, f'synthetic: {len(dataset)} items = {len(dataset.sources)} clean images x '
                                         f'{len(dataset.degradations)} degradations; no pairs to read', None))
    if not entries:
        raise MetaSchemaError(f'{args.opt}: no dataset entry of type {PAIRED_TYPE} or {SYNTHETIC_TYPE}')
    return entries


def _run_list(args):
    metas = available_metas(args.meta_dir)
    rows = []
    for name, path in metas.items():
        meta = load_dataset_meta(str(path))
        rows.append([name, meta.dataset, meta.degradation, meta.split, meta.rule, path.parent])
    print(format_table(['meta', 'dataset', 'degradation', 'split', 'rule', 'folder'], rows))
    return 0


def run(args):
    """Check the data; exit code 0 (usable), 1 (broken pairs or folders) or 2 (usage/option errors)."""
    try:
        if args.list:
            return _run_list(args)
        if args.meta:
            if not args.root:
                print('basicsr check-data: -meta needs --root DATA_ROOT (the folder the metas\' roots are relative to)')
                return 2
            metas = [load_dataset_meta(name, args.meta_dir) for name in args.meta]
            entries = [('-meta', None, '', META_ONLY_REQUIREMENT)]
        else:
            entries = _entries_from_options(args)
    except (MetaSchemaError, ValueError, OSError, yaml.YAMLError) as error:
        print(f'basicsr check-data: {error}')
        return 2
    reader = ImageReader()
    all_checks, broken = [], 0
    for label, settings, note, requirement in entries:
        if note:
            print(f'== {label}\n  {note}\n')
            continue
        data_root = settings.data_root if settings else args.root
        allow_mismatch = bool(settings and settings.allow_size_mismatch)
        transform = settings.transform if settings else None
        checks = [check_meta(label.split(' ')[0], meta, data_root, args.limit, reader, transform, requirement)
                  for meta in (settings.metas if settings else metas)]
        missing = [c for c in checks if c.layout_error]
        if missing and settings and settings.fallback_metas:
            print(f'== {label}\n  meta {missing[0].meta.name} is not available ({missing[0].layout_error}); the run '
                  f'uses fallback_meta {", ".join(meta.name for meta in settings.fallback_metas)}\n')
            checks = [check_meta(label.split(' ')[0], meta, data_root, args.limit, reader, transform, requirement)
                      for meta in settings.fallback_metas]
        shares = item_shares([p for c in checks if c.report for p in c.report.pairs], settings)
        print(describe_entry(f'{label}  data_root={data_root}', checks, shares, allow_mismatch, args.show,
                             requirement))
        found = sum(len(c.report.pairs) for c in checks if c.report)
        if settings and settings.max_items and found > settings.max_items:
            print(f'  max_items: the run uses the first {settings.max_items} of these {found} pairs')
        print()
        broken += sum(c.broken(allow_mismatch) for c in checks)
        all_checks += checks
    overlap = _duplicate_lines(all_checks, args.show)
    if overlap:
        print('\n'.join(overlap) + '\n')
    print(f'result: {broken} broken pair(s)/folder(s)' if broken else 'result: every pair is usable')
    return 1 if broken else 0
