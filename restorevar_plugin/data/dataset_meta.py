"""Dataset descriptions (``datasets_meta/*.yml``): loading, schema validation and pairing rules.

A meta file describes one dataset split: where it lies below a data root, which degradation it
holds and how each degraded (LQ) file finds its clean (GT) counterpart::

    name: reside_sots_outdoor_test      # must equal the file name without .yml
    dataset: RESIDE-SOTS-outdoor        # label used in reports and result tables
    degradation: haze                   # see DEGRADATION_TYPES; 'from_list' for list files that say it
    split: test                         # train | val | test
    root: RESIDE/SOTS/outdoor           # relative to the data root given at run time
    source: Li et al., TIP 2019; https://sites.google.com/view/reside-dehaze-datasets
    expected_pairs: 500                 # optional; check-data warns when the count differs
    pairing: {rule: regex, lq_dir: hazy, gt_dir: gt, pattern: '(\\d+)_[\\d.]+_[\\d.]+',
              replacement: '\\1', gt_extensions: [.png, .jpg]}

Pairing rules (keys of ``pairing`` besides ``rule``; see :data:`RULE_KEYS`):

* ``same_name``: ``lq_dir/<rel>.<ext>`` pairs with ``gt_dir/<rel>.<gt ext>``; ``recursive`` walks
  sub-folders (``<rel>`` keeps them); ``gt_extensions`` lists candidate GT extensions (default: the LQ
  file's own). Two existing candidates are an error (ambiguous), never a guess.
* ``regex``: as ``same_name``, but the GT name is ``re.fullmatch(pattern, <rel without ext>)``
  expanded with ``replacement`` (RESIDE: ``0001_0.8_0.2`` -> ``0001``); a name that does not match is
  reported, not skipped.
* ``sequence_folders``: ``<seq>/<lq_subdir>/<file>`` pairs with ``<seq>/<gt_subdir>/<file>`` (GoPro).
* ``list_file``: one or more list files (relative to ``root``). JSON: a list of objects with
  ``image_path``/``lq_path``/``lq`` and optionally ``target_path``/``gt_path``/``gt``, ``degradation``,
  ``dataset`` (RestoreVAR's lists load as they are), or a list of LQ paths. Text: one LQ path per line,
  or ``<lq>\\t<gt>``; ``#`` starts a comment. A missing GT path is derived with ``gt_substitutions``
  (``[[pattern, replacement], ...]`` applied in order with ``re.sub``, as PromptIR/AWRaCLe do). Paths
  in the lists are relative to ``root`` (absolute paths stay absolute).
* ``lmdb``: keys of ``<lq_db>/meta_info.txt`` (BasicSR's LMDB layout), GT under the same key in ``gt_db``.
* ``no_reference``: degraded images only (``lq_dir``, ``recursive``, ``lq_extensions``); GT is None.

Search path for meta names (first match wins): the ``meta_dirs`` argument (dataset option
``meta_dirs``), then the folders in the environment variable ``RESTOREVAR_META_PATH``
(``os.pathsep``-separated), then the repository's ``datasets_meta/`` next to the package (the
default for a source checkout / editable install). A value ending in ``.yml``/``.yaml`` or
containing a path separator is read as a file path.
"""
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import yaml

META_PATH_ENV = 'RESTOREVAR_META_PATH'
DEFAULT_META_DIR = Path(__file__).resolve().parents[2] / 'datasets_meta'
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
DEGRADATION_TYPES = ('haze', 'rain', 'snow', 'low_light', 'blur', 'noise', 'udc', 'mixed')
FROM_LIST = 'from_list'
SPLITS = ('train', 'val', 'test')
RESTOREVAR_DEGRADATIONS = {
    'Haze': 'haze',
    'Rain': 'rain',
    'Snow': 'snow',
    'Low-light': 'low_light',
    'Motion blur': 'blur',
    'Mixed': 'mixed',
    'toled': 'udc',
    'poled': 'udc',
}
TASK_DEGRADATIONS = {
    'dehaze': 'haze', 'dehaze_heavy': 'haze', 'derain': 'rain', 'derain_heavy': 'rain', 'desnow': 'snow',
    'desnow_heavy': 'snow', 'deblur': 'blur', 'denoise': 'noise', 'low-light': 'low_light', 'lowlight': 'low_light',
}
LIST_LQ_KEYS = ('image_path', 'lq_path', 'lq')
LIST_GT_KEYS = ('target_path', 'gt_path', 'gt')
REQUIRED = object()


class MetaSchemaError(ValueError):
    """A dataset meta file, inline meta entry or list file breaks the schema (names the file and key)."""


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


class _Key(NamedTuple):
    check: Callable[[object], bool]
    expected: str
    default: object = REQUIRED


def _is_text(value):
    return isinstance(value, str) and value.strip() != ''


def _is_name(value):
    return isinstance(value, str) and re.fullmatch(r'[A-Za-z0-9_.\-]+', value) is not None


def _is_bool(value):
    return isinstance(value, bool)


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_extension_list(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(ext, str) and ext.startswith('.') and len(ext) > 1 for ext in value)


def _is_text_or_text_list(value):
    return _is_text(value) or (isinstance(value, list) and bool(value) and all(_is_text(item) for item in value))


def _is_regex(value):
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _is_substitution_list(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, list) and len(item) == 2 and _is_regex(item[0]) and isinstance(item[1], str)
        for item in value)


def _is_degradation_list(value):
    return isinstance(value, list) and len(value) >= 2 and all(item in DEGRADATION_TYPES for item in value)


_LQ_EXTENSIONS = _Key(_is_extension_list, 'a list of extensions such as [.png, .jpg]', IMAGE_EXTENSIONS)
_GT_EXTENSIONS = _Key(_is_extension_list, 'a list of candidate GT extensions such as [.png, .jpg]', None)
_RECURSIVE = _Key(_is_bool, 'true or false', False)
_FOLDER = 'a folder relative to root'

TOP_KEYS = {
    'name': _Key(_is_name, 'a name of letters, digits, "_", "." or "-", equal to the file name'),
    'dataset': _Key(_is_text, 'the dataset label used in reports, e.g. RESIDE'),
    'degradation': _Key(lambda v: v in DEGRADATION_TYPES or v == FROM_LIST,
                        f'one of {", ".join(DEGRADATION_TYPES)} or {FROM_LIST}'),
    'split': _Key(lambda v: v in SPLITS, f'one of {", ".join(SPLITS)}'),
    'root': _Key(_is_text, 'a folder relative to the data root (use "." for the data root itself)'),
    'source': _Key(_is_text, 'where the data comes from (paper and official page)'),
    'pairing': _Key(lambda v: isinstance(v, dict), 'a mapping with a "rule" key and the rule\'s keys'),
    'components': _Key(_is_degradation_list, 'a list of at least two degradation types (only with mixed)', None),
    'expected_pairs': _Key(_is_positive_int, 'a positive integer', None),
}
RULE_KEYS = {
    'same_name': {
        'lq_dir': _Key(_is_text, _FOLDER), 'gt_dir': _Key(_is_text, _FOLDER), 'recursive': _RECURSIVE,
        'lq_extensions': _LQ_EXTENSIONS, 'gt_extensions': _GT_EXTENSIONS},
    'regex': {
        'lq_dir': _Key(_is_text, _FOLDER), 'gt_dir': _Key(_is_text, _FOLDER), 'recursive': _RECURSIVE,
        'pattern': _Key(_is_regex, 'a Python regular expression matched against the LQ name without extension'),
        'replacement': _Key(lambda v: isinstance(v, str), 'the GT name template, e.g. "\\1"'),
        'lq_extensions': _LQ_EXTENSIONS, 'gt_extensions': _GT_EXTENSIONS},
    'sequence_folders': {
        'lq_subdir': _Key(_is_text, 'the per-sequence degraded folder name, e.g. blur'),
        'gt_subdir': _Key(_is_text, 'the per-sequence clean folder name, e.g. sharp'),
        'lq_extensions': _LQ_EXTENSIONS, 'gt_extensions': _GT_EXTENSIONS},
    'list_file': {
        'list_file': _Key(_is_text_or_text_list, 'a list file (or a list of them) relative to root'),
        'format': _Key(lambda v: v in ('auto', 'json', 'text'), 'auto, json or text', 'auto'),
        'gt_substitutions': _Key(_is_substitution_list, 'a list of [pattern, replacement] pairs', None)},
    'lmdb': {
        'lq_db': _Key(_is_text, 'an LMDB folder (ending in .lmdb) relative to root'),
        'gt_db': _Key(_is_text, 'an LMDB folder (ending in .lmdb) relative to root')},
    'no_reference': {
        'lq_dir': _Key(_is_text, _FOLDER), 'recursive': _RECURSIVE, 'lq_extensions': _LQ_EXTENSIONS},
}


def _validate_mapping(mapping, schema, where):
    """Check ``mapping`` against ``schema`` ({key: _Key}); return it completed with defaults."""
    unknown = sorted(set(mapping) - set(schema))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hints.append(f'{key!r} (did you mean {close[0]!r}?)' if close else repr(key))
        raise MetaSchemaError(f'{where}: unknown key(s) {", ".join(hints)}; allowed keys: {", ".join(schema)}')
    result = {}
    for key, spec in schema.items():
        if key not in mapping:
            if spec.default is REQUIRED:
                raise MetaSchemaError(f'{where}: missing required key {key!r} ({spec.expected})')
            result[key] = spec.default
            continue
        if not spec.check(mapping[key]):
            raise MetaSchemaError(f'{where}: key {key!r} is {mapping[key]!r}; expected {spec.expected}')
        result[key] = mapping[key]
    return result


@dataclass(frozen=True)
class DatasetMeta:
    """A validated dataset description (one ``datasets_meta/*.yml`` file or inline option entry).

    Attributes:
        name, dataset, degradation, split, root, source: the top-level keys (module docstring).
        pairing (dict): ``rule`` plus every key of that rule, defaults filled in.
        components (tuple[str]): degradations mixed in a ``mixed`` dataset (may be empty).
        expected_pairs (int | None): the pair count of the official release, when known.
        origin (str): the file it came from, or a description of the inline entry.
    """
    name: str
    dataset: str
    degradation: str
    split: str
    root: str
    source: str
    pairing: dict
    components: tuple = ()
    expected_pairs: Optional[int] = None
    origin: str = '<inline>'

    @property
    def rule(self):
        """The pairing rule name."""
        return self.pairing['rule']

    @property
    def has_reference(self):
        """False for no-reference (degraded-only) datasets."""
        return self.rule != 'no_reference'


def parse_dataset_meta(mapping, origin='<inline>'):
    """Validate a meta mapping (already parsed from YAML) and build a :class:`DatasetMeta`.

    Args:
        mapping (dict): The meta content.
        origin (str): File path or description used in error messages.

    Raises:
        MetaSchemaError: Unknown or missing key, bad value, unknown pairing rule (message names ``origin``).
    """
    if not isinstance(mapping, dict):
        raise MetaSchemaError(f'{origin}: a dataset meta must be a mapping of keys, got {type(mapping).__name__}')
    top = _validate_mapping(mapping, TOP_KEYS, origin)
    pairing = dict(top['pairing'])
    rule = pairing.pop('rule', None)
    if rule not in RULE_KEYS:
        raise MetaSchemaError(f'{origin}: pairing.rule is {rule!r}; expected one of {", ".join(RULE_KEYS)}')
    pairing = dict(_validate_mapping(pairing, RULE_KEYS[rule], f'{origin}: pairing (rule {rule})'), rule=rule)
    if top['components'] is not None and top['degradation'] != 'mixed':
        raise MetaSchemaError(f'{origin}: key \'components\' is only allowed with degradation: mixed')
    if top['degradation'] == FROM_LIST and rule != 'list_file':
        raise MetaSchemaError(f'{origin}: degradation: {FROM_LIST} needs pairing.rule list_file, not {rule}')
    if origin.endswith(('.yml', '.yaml')) and Path(origin).stem != top['name']:
        raise MetaSchemaError(f'{origin}: name is {top["name"]!r} but the file is named {Path(origin).name!r}; '
                              'they must agree')
    return DatasetMeta(top['name'], top['dataset'], top['degradation'], top['split'], top['root'], top['source'],
                       pairing, tuple(top['components'] or ()), top['expected_pairs'], origin)


def meta_search_path(meta_dirs=None):
    """Folders searched for meta names, in order: ``meta_dirs``, ``$RESTOREVAR_META_PATH``, ``datasets_meta/``."""
    dirs = [Path(d) for d in (meta_dirs or [])]
    dirs += [Path(d) for d in os.environ.get(META_PATH_ENV, '').split(os.pathsep) if d]
    dirs.append(DEFAULT_META_DIR)
    return dirs


def available_metas(meta_dirs=None):
    """``{name: path}`` of every ``*.yml`` on the search path (the first folder holding a name wins)."""
    found = {}
    for folder in meta_search_path(meta_dirs):
        if folder.is_dir():
            for path in sorted(folder.glob('*.y*ml')):
                found.setdefault(path.stem, path)
    return found


def read_meta_file(path):
    """Read and validate one meta YAML file."""
    path = Path(path)
    if not path.is_file():
        raise MetaSchemaError(f'{path}: dataset meta file does not exist')
    try:
        mapping = yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise MetaSchemaError(f'{path}: not valid YAML ({error})') from error
    return parse_dataset_meta(mapping, str(path))


def load_dataset_meta(name_or_path, meta_dirs=None):
    """Load a dataset meta by name (searched on :func:`meta_search_path`) or by file path.

    Args:
        name_or_path (str | Path): e.g. ``'reside_sots_outdoor_test'`` or ``'my_metas/x.yml'``.
        meta_dirs (list[str] | None): Extra folders searched first.

    Returns:
        DatasetMeta

    Raises:
        MetaSchemaError: Unknown name (with close matches and the folders searched) or invalid file.
    """
    text = str(name_or_path)
    if text.endswith(('.yml', '.yaml')) or os.sep in text or '/' in text:
        return read_meta_file(text)
    metas = available_metas(meta_dirs)
    if text not in metas:
        hints = difflib.get_close_matches(text, list(metas), n=5, cutoff=0.5)
        hint = f' Did you mean: {", ".join(hints)}?' if hints else ''
        searched = ', '.join(str(d) for d in meta_search_path(meta_dirs))
        raise MetaSchemaError(f'no dataset meta named {text!r}.{hint} Searched: {searched} '
                              f'(add folders with the dataset option meta_dirs or ${META_PATH_ENV}).')
    return read_meta_file(metas[text])


def resolve_metas(entries, meta_dirs=None, where='meta'):
    """Turn a ``meta`` option (a name, path, inline mapping, or a list of them) into DatasetMeta objects."""
    if isinstance(entries, (str, dict)):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise MetaSchemaError(f'{where}: expected a meta name, a file path, an inline mapping or a non-empty '
                              f'list of them; got {entries!r}')
    metas = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            metas.append(parse_dataset_meta(entry, f'{where}[{index}] (inline)'))
        elif isinstance(entry, str):
            metas.append(load_dataset_meta(entry, meta_dirs))
        else:
            raise MetaSchemaError(f'{where}[{index}]: expected a meta name, path or mapping, got {entry!r}')
    return metas


def canonical_degradation(value, where):
    """Map a degradation label to a name in DEGRADATION_TYPES.

    Accepted: our names, RestoreVAR's JSON labels (:data:`RESTOREVAR_DEGRADATIONS`, e.g. ``'Low-light'``,
    ``'toled'``) and PromptIR/AWRaCLe task names (:data:`TASK_DEGRADATIONS`, e.g. ``'derain'``).
    """
    if value in DEGRADATION_TYPES:
        return value
    for table in (RESTOREVAR_DEGRADATIONS, TASK_DEGRADATIONS):
        if value in table:
            return table[value]
    raise MetaSchemaError(f'{where}: unknown degradation {value!r}; expected one of {", ".join(DEGRADATION_TYPES)}, '
                          f'a RestoreVAR label ({", ".join(RESTOREVAR_DEGRADATIONS)}) or a task name '
                          f'({", ".join(TASK_DEGRADATIONS)})')


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
