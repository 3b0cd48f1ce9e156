"""Pairing scanners: how each pairing rule of a dataset meta finds degraded / clean file pairs on disk.

One scanner per rule (``same_name`` and ``regex``, ``sequence_folders``, ``list_file``, ``lmdb``,
``no_reference``; the rules and their keys are described in :mod:`restorevar_plugin.data.meta.schema`).
:func:`scan_pairs` reports every pair and problem (``basicsr check-data``); :func:`find_pairs` raises on
any broken pair (the datasets).
"""
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from restorevar_plugin.data.meta.schema import (
    FROM_LIST,
    IMAGE_EXTENSIONS,
    DatasetMeta,
    MetaSchemaError,
    canonical_degradation,
)

LIST_LQ_KEYS = ('image_path', 'lq_path', 'lq')
LIST_GT_KEYS = ('target_path', 'gt_path', 'gt')


class DatasetLayoutError(FileNotFoundError):
    """A data root, folder, list file or database a meta needs is missing, or holds no degraded images."""


class DatasetPairingError(ValueError):
    """Degraded files without a (unique) clean counterpart, or list entries pointing at missing files."""


class ImagePair(NamedTuple):
    """One sample: ``lq_path`` (degraded), ``gt_path`` (clean, None for no-reference sets), canonical
    ``degradation`` and the ``dataset`` label."""
    lq_path: str
    gt_path: Optional[str]
    degradation: str
    dataset: str



@dataclass
class PairingReport:
    """Everything :func:`scan_pairs` found for one meta.

    Attributes:
        meta (DatasetMeta): The meta scanned.
        pairs (list[ImagePair]): Valid pairs, in file order.
        missing_gt (list[tuple[str, tuple[str]]]): LQ files whose GT does not exist, with the paths tried.
        ambiguous_gt (list[tuple[str, tuple[str]]]): LQ files with more than one existing GT candidate.
        unmatched (list[str]): LQ files whose name does not follow the ``regex`` pattern.
        missing_lq (list[str]): List entries (or LMDB keys) whose LQ file does not exist.
        orphan_gt (list[str]): GT files that no pair uses (folder and LMDB rules).
        duplicates (list[str]): LQ paths listed more than once (list files).
    """
    meta: DatasetMeta
    pairs: list = field(default_factory=list)
    missing_gt: list = field(default_factory=list)
    ambiguous_gt: list = field(default_factory=list)
    unmatched: list = field(default_factory=list)
    missing_lq: list = field(default_factory=list)
    orphan_gt: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)

    def problems(self):
        """``[(kind, message)]`` for every broken pair (missing/ambiguous GT, unmatched name, missing LQ)."""
        found = [('missing GT', f'{lq} (looked for {", ".join(tried)})') for lq, tried in self.missing_gt]
        found += [('ambiguous GT', f'{lq} (candidates {", ".join(cands)})') for lq, cands in self.ambiguous_gt]
        found += [('unmatched name', f'{lq} (does not match pattern {self.meta.pairing.get("pattern")})')
                  for lq in self.unmatched]
        found += [('missing LQ', lq) for lq in self.missing_lq]
        return found

    def raise_if_broken(self, shown=10):
        """Raise :class:`DatasetPairingError` listing up to ``shown`` broken pairs, if any."""
        problems = self.problems()
        if problems:
            lines = [f'  {kind}: {message}' for kind, message in problems[:shown]]
            more = f'\n  ... and {len(problems) - shown} more' if len(problems) > shown else ''
            raise DatasetPairingError(f'dataset meta {self.meta.name} ({self.meta.origin}): {len(problems)} broken '
                                      f'pair(s):\n' + '\n'.join(lines) + more +
                                      '\nRun `basicsr check-data` for a full report.')


def _require_dir(path, meta, key):
    if not os.path.isdir(path):
        raise DatasetLayoutError(f'{path}: folder does not exist (meta {meta.name} from {meta.origin}, key {key})')
    return path


def _list_images(folder, recursive, extensions):
    """``{posix path relative to folder: path}`` of images in ``folder`` (extensions matched case-insensitively)."""
    wanted = tuple(ext.lower() for ext in extensions)
    found = {}
    if recursive:
        for current, dirs, files in os.walk(folder, followlinks=True):
            dirs.sort()
            for file_name in files:
                if file_name.lower().endswith(wanted):
                    full = os.path.join(current, file_name)
                    found[Path(os.path.relpath(full, folder)).as_posix()] = full
    else:
        for entry in os.scandir(folder):
            if entry.is_file() and entry.name.lower().endswith(wanted):
                found[entry.name] = entry.path
    return dict(sorted(found.items()))


def _match_folders(report, lq_files, gt_files, gt_stem_of, gt_path_of, no_images_where):
    """Pair ``lq_files`` with ``gt_files`` (both ``{key: path}``).

    ``gt_stem_of(LQ key without extension)`` gives the GT key without extension (None: name does not
    follow the rule); ``gt_path_of(GT key)`` the path shown when a GT candidate is missing.
    """
    meta = report.meta
    if not lq_files:
        raise DatasetLayoutError(f'{no_images_where}: no degraded images with extensions '
                                 f'{", ".join(meta.pairing["lq_extensions"])} (meta {meta.name} from {meta.origin})')
    used = set()
    for key, lq_path in lq_files.items():
        stem, extension = os.path.splitext(key)
        gt_stem = gt_stem_of(stem)
        if gt_stem is None:
            report.unmatched.append(lq_path)
            continue
        candidates = list(dict.fromkeys(gt_stem + ext for ext in (meta.pairing['gt_extensions'] or [extension])))
        existing = [gt_files[c] for c in candidates if c in gt_files]
        if not existing:
            report.missing_gt.append((lq_path, tuple(gt_path_of(c) for c in candidates)))
        elif len(existing) > 1:
            report.ambiguous_gt.append((lq_path, tuple(existing)))
        else:
            used.add(existing[0])
            report.pairs.append(ImagePair(lq_path, existing[0], meta.degradation, meta.dataset))
    report.orphan_gt = [path for path in gt_files.values() if path not in used]


def _scan_folders(report, root):
    meta, pairing = report.meta, report.meta.pairing
    lq_dir = _require_dir(os.path.join(root, pairing['lq_dir']), meta, 'pairing.lq_dir')
    gt_dir = _require_dir(os.path.join(root, pairing['gt_dir']), meta, 'pairing.gt_dir')
    lq_files = _list_images(lq_dir, pairing['recursive'], pairing['lq_extensions'])
    gt_files = _list_images(gt_dir, pairing['recursive'], IMAGE_EXTENSIONS)
    if pairing['rule'] == 'regex':
        pattern, replacement = re.compile(pairing['pattern']), pairing['replacement']

        def gt_stem_of(stem):
            match = pattern.fullmatch(stem)
            return match.expand(replacement) if match else None
    else:
        def gt_stem_of(stem):
            return stem
    _match_folders(report, lq_files, gt_files, gt_stem_of, lambda key: os.path.join(gt_dir, key), lq_dir)


def _scan_sequences(report, root):
    pairing = report.meta.pairing
    lq_files, gt_files = {}, {}
    for sequence in sorted(entry.name for entry in os.scandir(root) if entry.is_dir()):
        for subdir, files, extensions in ((pairing['lq_subdir'], lq_files, pairing['lq_extensions']),
                                          (pairing['gt_subdir'], gt_files, IMAGE_EXTENSIONS)):
            folder = os.path.join(root, sequence, subdir)
            if os.path.isdir(folder):
                found = _list_images(folder, False, extensions)
                files.update({f'{sequence}/{key}': path for key, path in found.items()})

    def gt_path_of(key):
        sequence, file_name = key.split('/', 1)
        return os.path.join(root, sequence, pairing['gt_subdir'], file_name)

    _match_folders(report, lq_files, gt_files, lambda stem: stem, gt_path_of,
                   os.path.join(root, '<sequence>', pairing['lq_subdir']))


def _read_list_entries(list_path, list_format, where):
    """``[(index, lq, gt or None, degradation or None, dataset or None)]`` from a JSON or text list file."""
    if list_format == 'auto':
        list_format = 'json' if list_path.lower().endswith('.json') else 'text'
    with open(list_path, encoding='utf-8') as handle:
        if list_format == 'text':
            entries = []
            for number, line in enumerate(handle, start=1):
                line = line.rstrip('\r\n')
                if line.strip() and not line.lstrip().startswith('#'):
                    lq, _, gt = line.partition('\t')
                    entries.append((number, lq.strip(), gt.strip() or None, None, None))
            return entries
        try:
            content = json.load(handle)
        except json.JSONDecodeError as error:
            raise MetaSchemaError(f'{list_path}: not valid JSON ({error}); listed by {where}') from error
    if not isinstance(content, list):
        raise MetaSchemaError(f'{list_path}: expected a JSON list of entries, got {type(content).__name__}')
    entries = []
    for index, item in enumerate(content):
        if isinstance(item, str):
            entries.append((index, item, None, None, None))
            continue
        lq = next((item[k] for k in LIST_LQ_KEYS if isinstance(item, dict) and item.get(k)), None)
        if lq is None:
            raise MetaSchemaError(f'{list_path}: entry {index} has none of the keys {", ".join(LIST_LQ_KEYS)} '
                                  f'(expected a degraded image path): {item!r}')
        gt = next((item[k] for k in LIST_GT_KEYS if item.get(k)), None)
        entries.append((index, lq, gt, item.get('degradation'), item.get('dataset')))
    return entries


def _scan_list(report, root):
    meta, pairing = report.meta, report.meta.pairing
    list_files = pairing['list_file'] if isinstance(pairing['list_file'], list) else [pairing['list_file']]
    substitutions = [(re.compile(p), r) for p, r in (pairing['gt_substitutions'] or [])]
    seen = set()
    for list_file in list_files:
        list_path = os.path.join(root, list_file)
        if not os.path.isfile(list_path):
            raise DatasetLayoutError(f'{list_path}: list file does not exist (meta {meta.name} from {meta.origin}, '
                                     'key pairing.list_file)')
        entries = _read_list_entries(list_path, pairing['format'], f'meta {meta.name}')
        if not entries:
            raise DatasetLayoutError(f'{list_path}: the list is empty (meta {meta.name} from {meta.origin})')
        for index, lq, gt, degradation, dataset in entries:
            where = f'{list_path}: entry {index}'
            if gt is None:
                if not substitutions:
                    raise MetaSchemaError(f'{where} has no GT path and meta {meta.name} ({meta.origin}) gives no '
                                          'pairing.gt_substitutions to derive it')
                gt = lq
                for pattern, replacement in substitutions:
                    gt = pattern.sub(replacement, gt)
            if degradation is None and meta.degradation == FROM_LIST:
                raise MetaSchemaError(f'{where} has no "degradation", which meta {meta.name} ({meta.origin}) '
                                      f'needs (degradation: {FROM_LIST})')
            label = meta.degradation
            if degradation is not None:
                label = canonical_degradation(degradation, where)
                if meta.degradation not in (FROM_LIST, label):
                    raise MetaSchemaError(f'{where} says degradation {degradation!r} ({label}) but meta {meta.name} '
                                          f'({meta.origin}) declares {meta.degradation}')
            lq_path, gt_path = os.path.normpath(os.path.join(root, lq)), os.path.normpath(os.path.join(root, gt))
            if lq_path in seen:
                report.duplicates.append(lq_path)
            seen.add(lq_path)
            if not os.path.isfile(lq_path):
                report.missing_lq.append(lq_path)
            elif not os.path.isfile(gt_path):
                report.missing_gt.append((lq_path, (gt_path,)))
            else:
                report.pairs.append(ImagePair(lq_path, gt_path, label, dataset or meta.dataset))


def read_lmdb_keys(db_path):
    """Keys listed in ``<db_path>/meta_info.txt`` (BasicSR's LMDB layout: ``<key>.png (h,w,c) level``)."""
    info = os.path.join(db_path, 'meta_info.txt')
    if not os.path.isfile(info):
        raise DatasetLayoutError(f'{info}: missing; BasicSR LMDB folders list their keys there')
    with open(info, encoding='utf-8') as handle:
        return [os.path.splitext(line.split()[0])[0] for line in handle if line.strip()]


def _scan_lmdb(report, root):
    meta = report.meta
    lq_db = _require_dir(os.path.join(root, meta.pairing['lq_db']), meta, 'pairing.lq_db')
    gt_db = _require_dir(os.path.join(root, meta.pairing['gt_db']), meta, 'pairing.gt_db')
    lq_keys, gt_keys = read_lmdb_keys(lq_db), read_lmdb_keys(gt_db)
    if not lq_keys:
        raise DatasetLayoutError(f'{lq_db}: no keys in meta_info.txt (meta {meta.name} from {meta.origin})')
    gt_set = set(gt_keys)
    for key in lq_keys:
        lq_path, gt_path = f'{lq_db}/{key}', f'{gt_db}/{key}'
        if key in gt_set:
            report.pairs.append(ImagePair(lq_path, gt_path, meta.degradation, meta.dataset))
        else:
            report.missing_gt.append((lq_path, (gt_path,)))
    lq_set = set(lq_keys)
    report.orphan_gt = [f'{gt_db}/{key}' for key in gt_keys if key not in lq_set]


def _scan_no_reference(report, root):
    meta, pairing = report.meta, report.meta.pairing
    lq_dir = _require_dir(os.path.join(root, pairing['lq_dir']), meta, 'pairing.lq_dir')
    lq_files = _list_images(lq_dir, pairing['recursive'], pairing['lq_extensions'])
    if not lq_files:
        raise DatasetLayoutError(f'{lq_dir}: no degraded images with extensions '
                                 f'{", ".join(pairing["lq_extensions"])} (meta {meta.name} from {meta.origin})')
    report.pairs = [ImagePair(path, None, meta.degradation, meta.dataset) for path in lq_files.values()]


_SCANNERS = {
    'same_name': _scan_folders,
    'regex': _scan_folders,
    'sequence_folders': _scan_sequences,
    'list_file': _scan_list,
    'lmdb': _scan_lmdb,
    'no_reference': _scan_no_reference,
}


def scan_pairs(meta, data_root):
    """Apply ``meta``'s pairing rule below ``data_root`` and report pairs and problems.

    Args:
        meta (DatasetMeta): The dataset description.
        data_root (str | Path): Folder holding the dataset (``meta.root`` is relative to it).

    Returns:
        PairingReport

    Raises:
        DatasetLayoutError: ``data_root``, ``root`` or a rule folder/list is missing, or no images are found.
        MetaSchemaError: A list file breaks the list format.
    """
    if not os.path.isdir(data_root):
        raise DatasetLayoutError(f'data root {data_root} does not exist (needed by meta {meta.name} from '
                                 f'{meta.origin})')
    root = _require_dir(os.path.normpath(os.path.join(str(data_root), meta.root)), meta, 'root')
    report = PairingReport(meta)
    _SCANNERS[meta.rule](report, root)
    return report


def find_pairs(meta, data_root):
    """The pairs of ``meta`` below ``data_root``; raises on any broken pair (see :func:`scan_pairs`).

    Returns:
        list[ImagePair]: ``(lq_path, gt_path or None, degradation, dataset)`` tuples.

    Raises:
        DatasetLayoutError, MetaSchemaError: as :func:`scan_pairs`.
        DatasetPairingError: missing or ambiguous GT, names not following the rule, missing LQ list entries.
    """
    report = scan_pairs(meta, data_root)
    report.raise_if_broken()
    return report.pairs
