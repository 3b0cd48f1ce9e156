"""Run every method of a benchmark on every dataset, with a per-image cache so an interrupted run resumes.

Layout under ``<root>/results/<name>/``::

    cache/<method>/<dataset>.jsonl   first line {"fingerprint": ...}, then one scored row per image, appended as
                                     each image is done; a different fingerprint (options, weights, dataset,
                                     protocol or device changed) discards the file and the method's pictures
    cache/<method>/cost.json         FLOPs, parameters and peak memory of one image
    images/<dataset>/<image>/        input.png, gt.png and <method>.png of the images chosen for grids and report

A method whose weight files are missing is reported (file, where it was looked for, where to get it) and skipped.
The "degraded input" row scores the input itself against the GT under the same protocol.
"""
import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from basicsr.data import build_dataset
from basicsr.utils import imwrite, tensor2img
from torch.utils.data import Dataset, default_collate

from restorevar_plugin.benchmark.cost import MEMORY_DEFINITION, MeasuredCost, count_model_cost, median_time
from restorevar_plugin.benchmark.options import DEGRADED_INPUT, slugify
from restorevar_plugin.benchmark.provenance import sha256_file
from restorevar_plugin.checkpoints import resolve_checkpoint
from restorevar_plugin.commands.analyze_scales import select_indices
from restorevar_plugin.commands.restore import build_inference_model
from restorevar_plugin.evaluation import evaluate_dataset
from restorevar_plugin.harness import build_dataloader, finalize_options


@dataclass
class MethodResult:
    """What one row of the benchmark produced.

    Attributes:
        label (str): Row label. slug (str): Folder name.
        evaluations (dict): ``{dataset name: DatasetEvaluation}`` (empty when the method could not run).
        missing (list[str]): One message per missing weight file (empty when the method ran).
        checkpoints (list[str]): Paths of the weight files used.
        cost (MeasuredCost | None): Counted cost (None for the degraded-input row and missing methods).
        paper (dict): The paper's figures for this method. overrides (list[str]): ``force_yml`` applied.
        computed_images (int): Images restored in this run (0 when everything came from the cache).
    """

    label: str
    slug: str
    evaluations: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    cost: object = None
    paper: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)
    computed_images: int = 0


@dataclass
class SelectedImage:
    """An image shown in grids and the report: its dataset, index, stem and picture files (relative to results)."""

    dataset: str
    index: int
    stem: str
    files: dict


class DegradedInput:
    """A stand-in model whose output is its input: scores the degraded images against GT under the protocol."""

    def __init__(self, device):
        self.device = torch.device(device)

    def feed_data(self, data):
        """``data['lq']`` (and ``data['gt']``) ``(B, 3, H, W)`` in [0, 1]."""
        self.lq = data['lq']
        self.gt = data.get('gt')

    def test(self):
        """The output is the input."""
        self.output = self.lq

    def get_current_visuals(self):
        """``lq``, ``result`` (= ``lq``) and ``gt`` when present, ``(B, 3, H, W)`` in [0, 1]."""
        visuals = {'lq': self.lq, 'result': self.output}
        if self.gt is not None:
            visuals['gt'] = self.gt
        return visuals


class RowCache:
    """Scored rows of one method on one dataset, appended to a JSON-lines file as they are computed."""

    def __init__(self, path, fingerprint):
        self.path = Path(path)
        self.fingerprint = fingerprint

    def load(self):
        """``({image: row}, valid)``: the cached rows when the file exists with this fingerprint, else ``({}, False)``.

        A line cut short by an interruption is ignored.
        """
        if not self.path.is_file():
            return {}, False
        with open(self.path, encoding='utf-8') as handle:
            lines = handle.read().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get('fingerprint') != self.fingerprint:
            return {}, False
        rows = {}
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row['image']] = row
        return rows, True

    def start(self, keep):
        """Begin appending: a fresh file with the header unless ``keep`` (a valid cache is extended, after ending a
        line an interruption cut short)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not keep:
            with open(self.path, 'w', encoding='utf-8') as handle:
                handle.write(json.dumps({'fingerprint': self.fingerprint}) + '\n')
        elif not self.path.read_bytes().endswith(b'\n'):
            with open(self.path, 'a', encoding='utf-8') as handle:
                handle.write('\n')

    def append(self, row):
        """Add one row (flushed to disk at once)."""
        with open(self.path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(row) + '\n')
            handle.flush()
            os.fsync(handle.fileno())


def complete_model_options(method, spec, device):
    """The method's BasicSR test options, paths resolved against the root (not yet built)."""
    opt = copy.deepcopy(method.model_opt)
    results_root = spec.root / 'results' / spec.name
    opt.update(name=f'{spec.name}_{method.slug}', is_train=False, dist=False, rank=0, world_size=1,
               num_gpu=1 if device.type == 'cuda' else 0, auto_resume=False, datasets={})
    opt['path'] = dict(opt.get('path') or {}, results_root=str(results_root), log=str(results_root),
                       visualization=str(results_root / 'visualization'))
    return finalize_options(opt, spec.root)


def checkpoint_paths(model_opt):
    """``path.pretrain_*`` files named by the (resolved) model options, in option order."""
    return [value for key, value in model_opt['path'].items() if key.startswith('pretrain_') and value]


def missing_checkpoints(paths):
    """One message per missing file: its name, where it was looked for and where to get it."""
    messages = []
    for path in paths:
        try:
            resolve_checkpoint(path)
        except FileNotFoundError as error:
            messages.append(str(error))
    return messages


def fingerprint(*parts):
    """Short SHA-256 of the JSON of ``parts`` (what a cached row depends on)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:20]


def image_stem(index, lq_path):
    """``<index>_<file stem>``: a unique folder name for a dataset item."""
    return f'{index:05d}_{Path(lq_path).stem}'


class LabelledDataset(Dataset):
    """A dataset shown as ``<method> | <dataset>`` (its ``opt['name']``, which labels the evaluation's progress bar
    and messages); items and every other attribute are the wrapped dataset's."""

    def __init__(self, dataset, label):
        self.dataset = dataset
        self.opt = dict(getattr(dataset, 'opt', None) or {}, name=f'{label} | {dataset.opt["name"]}')

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getattr__(self, name):
        if name == 'dataset':  # not yet set (e.g. while unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class BenchmarkRun:
    """One execution of a :class:`~restorevar_plugin.benchmark.options.BenchmarkSpec`.

    Args:
        spec (BenchmarkSpec): Checked options.
        device (torch.device): Where the methods run.
    """

    def __init__(self, spec, device):
        self.spec = spec
        self.device = device
        self.results_dir = spec.root / 'results' / spec.name
        self.datasets = {}
        self.selected = {}

    def prepare_datasets(self):
        """Build every dataset and choose the images shown in grids and the report; save their input/GT pictures."""
        for name, dataset_opt in self.spec.datasets.items():
            dataset = build_dataset(copy.deepcopy(dataset_opt))
            if not len(dataset):
                raise ValueError(f'datasets.{name}: the dataset is empty')
            self.datasets[name] = dataset
            chosen = []
            for index in (select_indices(len(dataset), self.spec.images_per_dataset)
                          if self.spec.images_per_dataset else []):
                item = dataset[index]
                stem = image_stem(index, item['lq_path'])
                folder = self.results_dir / 'images' / name / stem
                files = {'input': folder / 'input.png'}
                if 'gt' in item:
                    files['gt'] = folder / 'gt.png'
                for key, tensor_key in (('input', 'lq'), ('gt', 'gt')):
                    if key in files:
                        imwrite(tensor2img(item[tensor_key]), str(files[key]))
                chosen.append(SelectedImage(name, index, stem, files))
            self.selected[name] = chosen

    def _fingerprint(self, model_opt, dataset_opt, checkpoints):
        digests = [sha256_file(path) for path in checkpoints]
        return fingerprint(model_opt, dataset_opt, self.spec.protocol.describe(), self.spec.protocol.metric_options(),
                           self.spec.extra_metrics, digests, str(self.device))

    def _evaluate(self, model, label, slug, model_opt, checkpoints):
        """Evaluate ``model`` on every dataset with the row cache; returns ``(evaluations, images computed now)``."""
        evaluations, computed = {}, 0
        for name, dataset_opt in self.spec.datasets.items():
            cache = RowCache(self.results_dir / 'cache' / slug / f'{name}.jsonl',
                             self._fingerprint(model_opt, dataset_opt, checkpoints))
            done, valid = cache.load()
            if not valid:
                for selected in self.selected[name]:
                    selected.files.pop(slug, None)
                    (self.results_dir / 'images' / name / selected.stem / f'{slug}.png').unlink(missing_ok=True)
            cache.start(keep=valid)
            new_rows = []

            def on_row(row, cache=cache, new_rows=new_rows):
                cache.append(row)
                new_rows.append(row)

            loader = build_dataloader(LabelledDataset(self.datasets[name], label), dataset_opt, num_gpu=0, dist=False)
            evaluation = evaluate_dataset(model, loader, self.spec.protocol, extra_metrics=self.spec.extra_metrics,
                                          done=done, on_row=on_row)
            evaluation.dataset = name
            evaluations[name] = evaluation
            computed += len(new_rows)
        return evaluations, computed

    def _save_visuals(self, model, slug):
        """Restore the chosen images with ``model`` into ``images/<dataset>/<image>/<slug>.png`` (kept when present)."""
        for name, chosen in self.selected.items():
            for selected in chosen:
                target = self.results_dir / 'images' / name / selected.stem / f'{slug}.png'
                if not target.is_file():
                    model.feed_data(default_collate([self.datasets[name][selected.index]]))
                    model.test()
                    imwrite(tensor2img(model.get_current_visuals()['result'][0]), str(target))
                selected.files[slug] = target

    def _counted_cost(self, model, slug, model_opt, checkpoints):
        """FLOPs, parameters and peak memory of one image of ``cost.dataset`` (``cache/<slug>/cost.json``), counted
        before the evaluation so that nothing the model caches between images (e.g. context features) is left
        out."""
        path = self.results_dir / 'cache' / slug / 'cost.json'
        key = fingerprint(self._fingerprint(model_opt, self.spec.datasets[self.spec.cost['dataset']], checkpoints),
                          MEMORY_DEFINITION)
        stored = json.loads(path.read_text()) if path.is_file() else {}
        if stored.get('fingerprint') != key:
            dataset = self.datasets[self.spec.cost['dataset']]
            cost = count_model_cost(model, default_collate([dataset[0]]), self.device)
            stored = {'fingerprint': key, 'cost': asdict(cost)}
            self._store(path, stored)
        return stored

    def _timed_cost(self, stored, evaluations):
        """The counted cost plus the median time per image after warm-up."""
        cost = MeasuredCost(**stored['cost'])
        seconds = [row.get('time_s') for evaluation in evaluations.values() for row in evaluation.rows]
        cost.time_s, cost.timed_images = median_time(seconds, self.spec.cost['warmup'])
        return cost

    @staticmethod
    def _store(path, stored):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(stored))
        os.replace(tmp, path)

    def run_method(self, method):
        """Evaluate one method (or report its missing weights)."""
        model_opt = complete_model_options(method, self.spec, self.device)
        checkpoints = checkpoint_paths(model_opt)
        result = MethodResult(method.label, method.slug, checkpoints=checkpoints, paper=method.paper,
                              overrides=method.overrides)
        result.missing = missing_checkpoints(checkpoints)
        if result.missing:
            return result
        model = build_inference_model(model_opt)
        counted = self._counted_cost(model, method.slug, model_opt, checkpoints)  # first: no cache warmed up yet
        result.evaluations, result.computed_images = self._evaluate(model, method.label, method.slug, model_opt,
                                                                    checkpoints)
        self._save_visuals(model, method.slug)
        result.cost = self._timed_cost(counted, result.evaluations)
        del model
        return result

    def run_degraded_input(self):
        """The reference row: the degraded input scored against GT."""
        slug = slugify(DEGRADED_INPUT)
        evaluations, computed = self._evaluate(DegradedInput(self.device), DEGRADED_INPUT, slug, {}, [])
        return MethodResult(DEGRADED_INPUT, slug, evaluations=evaluations, computed_images=computed)

    def run(self):
        """All methods, then the degraded-input row; returns ``[MethodResult]`` in option order."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.prepare_datasets()
        results = [self.run_method(method) for method in self.spec.methods]
        results.append(self.run_degraded_input())
        return results
