"""The benchmark option file: methods, datasets, protocol and outputs, read and checked before anything runs.

Schema (every path relative to the run's root, i.e. the current directory or ``--root``)::

    name: aior_benchmark                     # results go to <root>/results/<name>/
    device: auto                             # auto | cpu | cuda
    protocol: restorevar_paper               # a name of metrics.protocols.PROTOCOLS, or
    # protocol: {name: restorevar_paper, metrics: [psnr, ssim, lpips]}   (a subset of its metrics)
    # protocol: {name: restorevar_paper, metrics: [musiq, clipiqa], no_reference_on_paired: true}
    methods:
      - label: RestoreVAR                    # row label (unique)
        opt: options/restorevar_test.yml     # a model option file (its datasets are ignored; relative to the
                                             # root, else the current directory, else this file's folder), or
        # model: {model_type: ..., network_g: ..., path: ..., val: ...}  (an inline model block)
        path: {pretrain_network_vqvae: pretrained/vae_restorevar.ckpt}   # weights, merged into path:
        force_yml: ['val:use_refiner=false'] # BasicSR --force_yml-style overrides of this method only
        paper: {time_s: 0.201, tflops: 1.05, params_m: 296.95, source: 'Table 5'}   # optional
    datasets:                                # the datasets: schema of test option files
      test_1: {name: RESIDE, type: MultiDegradationPairedDataset, ...}
    grids: {images_per_dataset: 4, crops: [{x: 0.4, y: 0.4, size: 0.2}]}   # optional
    report: true                             # write report.html (default true)
    cost: {warmup: 1, dataset: RESIDE, ldm_reference: true}              # optional

A protocol measures its full-reference metrics on images with a GT and its no-reference metrics on images
without one (the paper's Tables 1 and 2); ``no_reference_on_paired: true`` measures the no-reference metrics on
every image (Table 2 of the paper scores sets that do have a GT with MUSIQ / CLIPIQA only).

``force_yml`` entries are ``key:sub:...=value`` with BasicSR's value parsing (``~``/``none``, ``true``/``false``,
numbers, ``[lists]``, strings); intermediate keys must exist, integer keys index lists. The command's own
``--force_yml`` applies the same way to the benchmark option file itself before it is checked.
"""
import ast
import copy
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from restorevar_plugin.harness import (
    OptionError,
    check_registry_names,
    resolve_option_paths,
)
from restorevar_plugin.metrics.protocols import METRICS, PROTOCOLS

TOP_LEVEL_KEYS = ('name', 'device', 'protocol', 'methods', 'datasets', 'grids', 'report', 'cost')
METHOD_KEYS = ('label', 'opt', 'model', 'path', 'force_yml', 'paper')
GRID_KEYS = ('images_per_dataset', 'crops')
COST_KEYS = ('warmup', 'dataset', 'ldm_reference')
PAPER_KEYS = ('time_s', 'tflops', 'params_m', 'source')
DEGRADED_INPUT = 'degraded input'


@dataclass
class MethodSpec:
    """One row of the benchmark.

    Attributes:
        label (str): Row label.
        slug (str): File-system name derived from the label (cache and image folders).
        model_opt (dict): The model's BasicSR options after merging ``path`` and applying ``force_yml``
            (relative paths still unresolved; ``datasets`` removed).
        source (str): Where the model options came from (option file path or ``'inline'``).
        overrides (list[str]): The ``force_yml`` entries applied.
        paper (dict): The paper's own figures for this method (``time_s``, ``tflops``, ``params_m``, ``source``).
    """

    label: str
    slug: str
    model_opt: dict
    source: str
    overrides: list = field(default_factory=list)
    paper: dict = field(default_factory=dict)


@dataclass
class BenchmarkSpec:
    """The whole checked option file (see the module docstring)."""

    name: str
    option_file: Path
    root: Path
    device: str
    protocol: object
    extra_metrics: dict
    methods: list
    datasets: dict
    images_per_dataset: int
    crops: list
    report: bool
    cost: dict


def parse_override_value(value):
    """BasicSR's ``--force_yml`` value parsing, without ``eval``: ``~``/``none`` -> None, booleans, numbers,
    ``!!float x``, ``[lists]`` (Python literal syntax), anything else a string."""
    text = value.strip()
    if text == '~' or text.lower() == 'none':
        return None
    if text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    if text.startswith('!!float'):
        return float(text.replace('!!float', ''))
    if text.isdigit():
        return int(text)
    if text.replace('.', '', 1).isdigit() and text.count('.') < 2:
        return float(text)
    if text.startswith('['):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError) as error:
            raise OptionError(f'force_yml value {value!r} is not a valid list: {error}') from None
    return text


def apply_override(options, entry, where):
    """Apply one ``key:sub:...=value`` override to ``options`` in place.

    Raises:
        OptionError: No ``=``, or an intermediate key that does not exist (``where`` names the option list).
    """
    if '=' not in entry:
        raise OptionError(f'{where}: override {entry!r} must look like key:sub=value')
    keys_text, value = entry.split('=', 1)
    keys = [key.strip() for key in keys_text.split(':')]
    target = options
    for depth, key in enumerate(keys[:-1]):
        target = _child(target, key, entry, where, ':'.join(keys[:depth + 1]))
    last = keys[-1]
    if isinstance(target, list):
        target[_list_index(target, last, entry, where)] = parse_override_value(value)
    elif isinstance(target, dict):
        target[last] = parse_override_value(value)
    else:
        raise OptionError(f'{where}: override {entry!r}: {":".join(keys[:-1])} is not a mapping')


def _list_index(items, key, entry, where):
    if not key.lstrip('-').isdigit() or not -len(items) <= int(key) < len(items):
        raise OptionError(f'{where}: override {entry!r}: {key!r} is not an index of a list of {len(items)}')
    return int(key)


def _child(container, key, entry, where, so_far):
    if isinstance(container, list):
        return container[_list_index(container, key, entry, where)]
    if not isinstance(container, dict) or container.get(key) is None:
        raise OptionError(f'{where}: override {entry!r}: option {so_far} does not exist (overrides can only add '
                          'the last key)')
    return container[key]


def slugify(label):
    """A file-system-safe name for a method label (``'RestoreVAR w/o refiner'`` -> ``'RestoreVAR_w_o_refiner'``)."""
    slug = re.sub(r'[^A-Za-z0-9._-]+', '_', label).strip('_')
    return slug or 'method'


def _read_yaml(path, where):
    try:
        with open(path, encoding='utf-8') as handle:
            options = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise OptionError(f'{where}: {path} is not valid YAML: {error}') from None
    if not isinstance(options, dict):
        raise OptionError(f'{where}: {path} must hold a mapping of options')
    return options


def _reject_unknown(options, known, where):
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise OptionError(f'{where}: unknown option(s) {", ".join(unknown)}; options: {", ".join(known)}')


def _find_model_file(value, root, option_dir, where):
    candidates = [Path(value)] if Path(value).is_absolute() else list(dict.fromkeys(
        [root / value, Path.cwd() / value, option_dir / value]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ', '.join(str(candidate) for candidate in candidates)
    raise OptionError(f'{where}.opt: model option file {value!r} not found (looked for {looked})')


def build_protocol(value):
    """The protocol named by ``protocol:`` and the metrics measured on every image.

    Args:
        value (str | dict): A protocol name, or ``{name, metrics: [keys], no_reference_on_paired: bool}``.

    Returns:
        tuple[EvaluationProtocol, dict]: The protocol (restricted to ``metrics``, without its no-reference metrics
        when ``no_reference_on_paired``) and ``{key: BasicSR metric options}`` to measure on every image.
    """
    if isinstance(value, str):
        value = {'name': value}
    if not isinstance(value, dict) or 'name' not in value:
        raise OptionError(f'protocol: expected a protocol name or {{name: ..., metrics: [...]}}; got {value!r}')
    _reject_unknown(value, ('name', 'metrics', 'no_reference_on_paired'), 'protocol')
    if value['name'] not in PROTOCOLS:
        raise OptionError(f'protocol: unknown protocol {value["name"]!r}; known: {", ".join(sorted(PROTOCOLS))}')
    protocol = PROTOCOLS[value['name']]
    chosen = list(protocol.metrics if value.get('metrics') is None else value['metrics'])
    unknown = [key for key in chosen if key not in protocol.metrics]
    if unknown or not chosen:
        raise OptionError(f'protocol.metrics: {unknown or "[]"} not among the metrics of {protocol.name}: '
                          f'{", ".join(protocol.metrics)}')
    everywhere = [key for key in chosen if value.get('no_reference_on_paired') and not METRICS[key].needs_reference]
    options = protocol.metric_options()
    extra = {key: options[key] for key in everywhere}
    kept = {key: protocol.metrics[key] for key in chosen if key not in everywhere}
    return replace(protocol, metrics=kept), extra


def read_method(entry, index, root, option_dir):
    """One checked ``methods:`` entry as a :class:`MethodSpec` (model options read, ``path`` merged, ``force_yml``
    applied, registry names checked).

    Args:
        entry (dict): The method's mapping (``label``, ``opt`` or ``model``, ``path``, ``force_yml``, ``paper``).
        index (int): Its position in ``methods`` (for messages).
        root (Path): The run's root; ``option_dir`` (the benchmark file's folder) is searched after it.

    Raises:
        OptionError: Anything the method cannot run with (the message names ``methods[index]`` and the option).
    """
    where = f'methods[{index}]'
    if not isinstance(entry, dict):
        raise OptionError(f'{where}: expected a mapping with label and opt or model; got {entry!r}')
    _reject_unknown(entry, METHOD_KEYS, where)
    label = entry.get('label')
    if not label or not isinstance(label, str):
        raise OptionError(f'{where}.label: every method needs a label (its row name)')
    where = f'{where} ({label})'
    if ('opt' in entry) == ('model' in entry):
        raise OptionError(f'{where}: give exactly one of opt (a model option file) or model (an inline block)')
    if 'opt' in entry:
        source = _find_model_file(entry['opt'], root, option_dir, where)
        model_opt = _read_yaml(source, f'{where}.opt')
    else:
        if not isinstance(entry['model'], dict):
            raise OptionError(f'{where}.model: expected a mapping of model options')
        source, model_opt = 'inline', copy.deepcopy(entry['model'])
    model_opt.pop('datasets', None)
    model_opt['path'] = dict(model_opt.get('path') or {}, **(entry.get('path') or {}))
    overrides = list(entry.get('force_yml') or [])
    for override in overrides:
        apply_override(model_opt, override, f'{where}.force_yml')
    paper = dict(entry.get('paper') or {})
    _reject_unknown(paper, PAPER_KEYS, f'{where}.paper')
    if not model_opt.get('model_type'):
        raise OptionError(f'{where}: the model options need a model_type')
    for key, value in model_opt.items():
        if key.startswith('network_') and not (isinstance(value, dict) and value.get('type')):
            raise OptionError(f'{where}: {key} must be a mapping with a type')
    check_registry_names(model_opt)
    return MethodSpec(label=label, slug=slugify(label), model_opt=model_opt, source=str(source),
                      overrides=overrides, paper=paper)


def _datasets(value, root):
    if not isinstance(value, dict) or not value:
        raise OptionError('datasets: at least one dataset entry (name, type, ...) is required')
    datasets = {}
    for key, dataset_opt in value.items():
        if not isinstance(dataset_opt, dict) or 'type' not in dataset_opt:
            raise OptionError(f'datasets.{key}: expected a dataset mapping with a type')
        dataset_opt = dict(dataset_opt, name=dataset_opt.get('name', key), phase='test')
        if dataset_opt['name'] in datasets:
            raise OptionError(f'datasets.{key}: dataset name {dataset_opt["name"]!r} is used twice')
        datasets[dataset_opt['name']] = dataset_opt
    resolve_option_paths({'datasets': datasets}, root)
    check_registry_names({'model_type': 'SRModel', 'datasets': datasets})
    return datasets


def _positive_int(value, where, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f'{where}: expected an integer >= {minimum}; got {value!r}')
    return value


def _crops(value):
    crops = []
    for index, crop in enumerate(value or []):
        where = f'grids.crops[{index}]'
        if not isinstance(crop, dict):
            raise OptionError(f'{where}: expected {{x, y, size}} as fractions of the image; got {crop!r}')
        _reject_unknown(crop, ('x', 'y', 'size'), where)
        x, y, size = (float(crop.get(key, default)) for key, default in (('x', 0.4), ('y', 0.4), ('size', 0.2)))
        if not (0 < size <= 1 and 0 <= x <= 1 - size and 0 <= y <= 1 - size):
            raise OptionError(f'{where}: x, y in [0, 1 - size] and size in (0, 1] (fractions of the image side); '
                              f'got x={x}, y={y}, size={size}')
        crops.append({'x': x, 'y': y, 'size': size})
    return crops


def load_benchmark_options(option_file, root, force_yml=None):
    """Read, override and check a benchmark option file.

    Args:
        option_file (str | Path): The YAML file.
        root (Path): The run's root (relative paths, ``results/``).
        force_yml (list[str] | None): ``key:sub=value`` overrides of the benchmark file itself.

    Returns:
        BenchmarkSpec: The checked options; each method's model options are complete but not yet built.

    Raises:
        OptionError: Anything the benchmark cannot run (the message names the option).
        UnknownRegistryNameError: A ``type`` / ``model_type`` no registry holds.
    """
    option_file = Path(option_file).resolve()
    if not option_file.is_file():
        raise FileNotFoundError(f'-opt: benchmark option file not found: {option_file}')
    root = Path(root).resolve()
    options = _read_yaml(option_file, '-opt')
    for entry in force_yml or []:
        apply_override(options, entry, '--force_yml')
    _reject_unknown(options, TOP_LEVEL_KEYS, str(option_file))
    if not options.get('name'):
        raise OptionError(f'{option_file}: option name (the results folder) is required')
    device = options.get('device', 'auto')
    if device not in ('auto', 'cpu', 'cuda'):
        raise OptionError(f'device: expected auto, cpu or cuda; got {device!r}')
    if not isinstance(options.get('methods'), list) or not options['methods']:
        raise OptionError('methods: a list of at least one method (label + opt or model) is required')
    methods = [read_method(entry, index, root, option_file.parent) for index, entry in enumerate(options['methods'])]
    labels = [method.label for method in methods] + [DEGRADED_INPUT]
    slugs = [method.slug for method in methods] + [slugify(DEGRADED_INPUT)]
    if len(set(labels)) != len(labels) or len(set(slugs)) != len(slugs):
        raise OptionError(f'methods: labels must differ (also as folder names) and not be {DEGRADED_INPUT!r}; got '
                          f'{[method.label for method in methods]}')
    datasets = _datasets(options.get('datasets'), root)
    grids = options.get('grids') or {}
    _reject_unknown(grids, GRID_KEYS, 'grids')
    cost = dict(options.get('cost') or {})
    _reject_unknown(cost, COST_KEYS, 'cost')
    cost['warmup'] = _positive_int(cost.get('warmup', 1), 'cost.warmup', minimum=0)
    cost.setdefault('ldm_reference', True)
    cost.setdefault('dataset', next(iter(datasets)))
    if cost['dataset'] not in datasets:
        raise OptionError(f'cost.dataset: {cost["dataset"]!r} is not a dataset name; names: {", ".join(datasets)}')
    protocol, extra_metrics = build_protocol(options.get('protocol', 'restorevar_paper'))
    return BenchmarkSpec(
        name=str(options['name']), option_file=option_file, root=root, device=device, protocol=protocol,
        extra_metrics=extra_metrics, methods=methods, datasets=datasets,
        images_per_dataset=_positive_int(grids.get('images_per_dataset', 0), 'grids.images_per_dataset', minimum=0),
        crops=_crops(grids.get('crops')), report=bool(options.get('report', True)), cost=cost)


def metric_info(label):
    """The :class:`MetricInfo` of a metric key (``'psnr'``) or label (``'PSNR'``), or None."""
    lowered = str(label).lower()
    for key, info in METRICS.items():
        if lowered in (key, info.label.lower()):
            return info
    return None
