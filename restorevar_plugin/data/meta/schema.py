"""Schema of a dataset meta (one ``datasets_meta/*.yml`` file or inline option entry) and its validation.

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

Pairing rules (keys of ``pairing`` besides ``rule``; see :data:`RULE_KEYS`; the scanners are in
:mod:`restorevar_plugin.data.meta.pairing`):

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
"""
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

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
REQUIRED = object()


class MetaSchemaError(ValueError):
    """A dataset meta file, inline meta entry or list file breaks the schema (names the file and key)."""


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
