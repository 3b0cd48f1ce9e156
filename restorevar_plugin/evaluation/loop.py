"""The evaluation loop: restore every image of a dataset, score it, save images and grids, time it.

It works with any BasicSR model (``feed_data`` / ``test`` / ``get_current_visuals``, visuals
``(B, 3, H, W)`` in [0, 1]). What it adds to BasicSR's loop:

* **Robust reading**: the dataset is read through a wrapper that turns an item which raises into a
  "skipped" record (name and reason) instead of breaking the DataLoader; ``strict=True`` re-raises. A
  batch whose restoration raises is skipped the same way. When no item at all succeeds, the evaluation
  raises (that is a problem of the options or the model, not of single files).
* **Batches**: the loader's batch size is kept; items of one batch that differ in shape (or in having a
  GT) are restored as consecutive sub-batches of equal shapes, so any dataset can be batched.
* **Sharding**: under ``torch.distributed`` every rank evaluates the items ``rank, rank + world, ...``
  and the rows are gathered (``all_gather_object``) so that every rank returns the whole evaluation;
  ranks move in lock step, one batch each, sharing the image paths of each step so that every rank
  gives each image the name a single process would.
* **Timing**: a model whose ``test`` reads ``self.timer`` (a :class:`StepTimer`) times its own steps
  (RestoreVAR: encoder, generation, refiner, decoder); for any other model ``test`` is timed as one
  ``network`` step. CUDA is synchronised around each timed span.
"""
import contextlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import get_dist_info
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from restorevar_plugin.evaluation.scoring import (
    all_metric_labels,
    applicable_metrics,
    describe_error,
    score_image,
)
from restorevar_plugin.metrics.protocols import EvaluationProtocol


class StepTimer:
    """Wall-clock seconds per named pipeline step, synchronising CUDA so that GPU time is counted."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.totals = defaultdict(float)
        self.images = 0

    @contextlib.contextmanager
    def measure(self, name):
        """Context manager adding the time of its body to ``name``."""
        self.sync()
        start = time.perf_counter()
        yield
        self.sync()
        self.totals[name] += time.perf_counter() - start

    def sync(self):
        """Wait for queued CUDA work (no-op on CPU)."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def per_image_ms(self):
        """``{step: milliseconds per image}`` over the images counted in ``images``."""
        return {name: 1000 * total / max(self.images, 1) for name, total in self.totals.items()}


def unique_image_name(path, used):
    """The file stem of ``path``, prefixed with parent folders until it is not in ``used`` (then added).

    GoPro, REVIDE and LOLBlur reuse frame names across sequence folders; this keeps their outputs apart.
    """
    parts = Path(path).with_suffix('').parts
    for depth in range(1, len(parts) + 1):
        name = '_'.join(parts[-depth:])
        if name not in used:
            used.add(name)
            return name
    raise ValueError(f'{path} appears twice in the same dataset')


@dataclass
class DatasetEvaluation:
    """The result of evaluating one dataset.

    Attributes:
        dataset (str): The dataset option ``name``.
        protocol (EvaluationProtocol): How it was measured (``describe()`` is the line under every table).
        rows (list[dict]): One per image in dataset order: ``image`` (unique name), ``<metric label>``
            (float, or None where it could not be computed; absent where it does not apply, e.g. PSNR
            without GT) and ``time_s`` (seconds of restoration per image).
        means (dict): ``{label: mean over the images it could score}``; labels nothing scored are absent.
        counts (dict): ``{label: number of images scored}``.
        skipped (list[tuple[str, str]]): ``(image name or path, reason)`` of items not read or not restored.
        timing_ms (dict): ``{step: milliseconds per image}``.
    """

    dataset: str
    protocol: EvaluationProtocol
    rows: list
    means: dict
    counts: dict
    skipped: list
    timing_ms: dict

    @property
    def labels(self):
        """Metric labels that apply to at least one image, in column order."""
        return [label for label in self.counts if any(label in row for row in self.rows)]

    def not_scored(self):
        """``{label: number of images it applied to but could not score}``."""
        return {label: sum(1 for row in self.rows if label in row and row[label] is None) for label in self.labels}


def item_path(dataset, index):
    """The input file of item ``index`` when the dataset lists it (BasicSR's ``paths``, our ``pairs``), else None."""
    paths = getattr(dataset, 'paths', None)
    if isinstance(paths, (list, tuple)) and index < len(paths):
        entry = paths[index]
        return entry.get('lq_path', entry.get('gt_path')) if isinstance(entry, dict) else str(entry)
    pairs = getattr(dataset, 'pairs', None)
    if isinstance(pairs, (list, tuple)) and index < len(pairs):
        return getattr(pairs[index], 'lq_path', None)
    return None


class EvaluationItems(Dataset):
    """Items ``indices`` of ``dataset`` as ``(index, sample, None)``, or ``(index, None, (path, reason))`` when
    reading raises (``strict``: the error propagates)."""

    def __init__(self, dataset, indices, strict=False):
        self.dataset, self.indices, self.strict = dataset, list(indices), strict

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, position):
        index = self.indices[position]
        if self.strict:
            return index, self.dataset[index], None
        try:
            return index, self.dataset[index], None
        except Exception as error:  # noqa: BLE001  (reported and skipped by the loop)
            return index, None, (item_path(self.dataset, index) or f'item {index}', describe_error(error))


def _layout(sample):
    return tuple(sorted((key, tuple(value.shape) if torch.is_tensor(value) else None) for key, value in sample.items()))


def collate_items(items):
    """Collate :class:`EvaluationItems` entries into ``(groups, failed)``.

    ``groups``: ``[(indices, batch)]``, runs of consecutive samples of one layout (keys and tensor shapes),
    each collated by ``default_collate``; ``failed``: ``[(index, path, reason)]``.
    """
    groups, failed, run = [], [], []
    for index, sample, failure in items:
        if failure is not None:
            failed.append((index, *failure))
            continue
        if run and _layout(run[-1][1]) != _layout(sample):
            groups.append(([i for i, _ in run], default_collate([s for _, s in run])))
            run = []
        run.append((index, sample))
    if run:
        groups.append(([i for i, _ in run], default_collate([s for _, s in run])))
    return groups, failed


def _gathered(local, world_size):
    """``local`` of every rank, concatenated (only ``local`` outside ``torch.distributed``)."""
    if world_size == 1:
        return list(local)
    everything = [None] * world_size
    dist.all_gather_object(everything, list(local))
    return [entry for part in everything for entry in part]


def grid_image(visuals, index):
    """``[input | output | GT]`` strip ``(3, H, 3W)`` of image ``index``; the input is resized (nearest) to the
    output's size if they differ, the GT left out if its size differs."""
    result = visuals['result'][index]
    lq = visuals['lq'][index]
    if lq.shape != result.shape:
        lq = F.interpolate(lq[None], size=result.shape[-2:], mode='nearest')[0]
    panels = [lq, result]
    if 'gt' in visuals and visuals['gt'][index].shape == result.shape:
        panels.append(visuals['gt'][index])
    return torch.cat(panels, dim=-1)


class _Evaluator:
    """State of one :func:`evaluate_dataset` call on one rank."""

    def __init__(self, model, protocol, extra, options):
        self.model, self.protocol, self.extra = model, protocol, extra
        self.options = options
        self.timer = StepTimer(getattr(model, 'device', 'cpu'))
        self.used_names, self.names = set(), {}
        self.rows, self.skipped = [], []

    def name_items(self, groups, world_size):
        """Give every item of this step (all ranks) its unique name, in dataset order."""
        local = [(index, batch.get('lq_path', batch.get('gt_path', [None] * len(indices)))[k])
                 for indices, batch in groups for k, index in enumerate(indices)]
        for index, path in sorted(_gathered(local, world_size)):
            self.names[index] = unique_image_name(path or f'{index:06d}', self.used_names)

    def restore(self, batch, count):
        """Run the model on ``batch``; returns its visuals and the seconds per image."""
        steps_before = dict(self.timer.totals)
        self.model.feed_data(batch)
        self.timer.sync()
        start = time.perf_counter()
        self.model.test()
        self.timer.sync()
        elapsed = time.perf_counter() - start
        if dict(self.timer.totals) == steps_before:
            self.timer.totals['network'] += elapsed
            self.timer.images += count
        return self.model.get_current_visuals(), elapsed / count

    def evaluate_group(self, indices, batch, dataset_name):
        names = [self.names[index] for index in indices]
        done = self.options['done'] or {}
        if all(name in done for name in names):
            self.rows.extend((index, done[name]) for index, name in zip(indices, names))
            return
        try:
            visuals, seconds = self.restore(batch, len(indices))
        except Exception as error:  # noqa: BLE001  (the batch is reported and skipped unless strict)
            if self.options['strict']:
                raise
            for index, name in zip(indices, names):
                self.skip(index, name, f'restoration failed: {describe_error(error)}', dataset_name)
            return
        has_gt = 'gt' in batch
        if not has_gt:  # BasicSR's SRModel keeps the previous batch's GT
            visuals = {key: value for key, value in visuals.items() if key != 'gt'}
        metrics = applicable_metrics(self.protocol, self.extra, has_gt)
        for k, (index, name) in enumerate(zip(indices, names)):
            if name in done:
                self.rows.append((index, done[name]))
                continue
            gt = visuals['gt'][k] if has_gt else None
            row = {'image': name, **score_image(metrics, visuals['result'][k], gt, name, dataset_name),
                   'time_s': seconds}
            self.save_images(name, visuals, k)
            self.rows.append((index, row))
            if self.options['on_row'] is not None:
                self.options['on_row'](row)

    def save_images(self, name, visuals, k):
        stem = self.options['image_stem'](name) if self.options['image_stem'] else None
        if stem is None:
            return
        if self.options['save_img']:
            imwrite(tensor2img(visuals['result'][k]), f'{stem}.png')
        if self.options['save_grid']:
            imwrite(tensor2img(grid_image(visuals, k)), f'{stem}_grid.png')

    def skip(self, index, name, reason, dataset_name):
        get_root_logger().warning(f'{dataset_name}: skipped {name}: {reason}')
        self.skipped.append((index, name, reason))


def evaluate_dataset(model, dataloader, protocol, *, extra_metrics=None, save_dir=None, image_stem=None,
                     save_img=False, save_grid=False, strict=False, done=None, on_row=None, progress=True):
    """Restore and score every image of ``dataloader.dataset`` under ``protocol``.

    Args:
        model: A BasicSR model: ``feed_data(batch)``, ``test()``, ``get_current_visuals()`` giving ``lq``,
            ``result`` (and ``gt``) ``(B, 3, H, W)`` in [0, 1]; ``device``.
        dataloader (DataLoader): Its dataset, batch size, workers and ``pin_memory`` are used (the items are
            read through :class:`EvaluationItems`, sharded across ranks under ``torch.distributed``).
        protocol (EvaluationProtocol): Metrics (and the record under the tables).
        extra_metrics (dict | None): ``{label: BasicSR metric options}`` measured on every image they can be.
        save_dir (str | Path | None): Where images go (``<save_dir>/<name>.png``) unless ``image_stem`` is given.
        image_stem (callable | None): ``name -> path without extension`` of an image's files.
        save_img (bool): Save the restored image (8-bit PNG).
        save_grid (bool): Save the ``[input | output | GT]`` strip as ``<stem>_grid.png``.
        strict (bool): Stop at the first unreadable or unrestorable item instead of skipping it.
        done (dict | None): ``{image name: row}`` computed before; reused instead of re-run (resume).
        on_row (callable | None): ``on_row(row)`` after each new image is scored (on its rank).
        progress (bool): Progress bar (rank 0).

    Returns:
        DatasetEvaluation: The same on every rank.
    """
    if image_stem is None and save_dir is not None:
        image_stem = lambda name: Path(save_dir) / name  # noqa: E731
    extra = extra_metrics or {}
    dataset = dataloader.dataset
    dataset_name = (getattr(dataset, 'opt', None) or {}).get('name', type(dataset).__name__)
    rank, world_size = get_dist_info()
    batch_size = dataloader.batch_size or 1
    loader = DataLoader(EvaluationItems(dataset, range(rank, len(dataset), world_size), strict),
                        batch_size=batch_size, shuffle=False, num_workers=dataloader.num_workers,
                        collate_fn=collate_items, pin_memory=dataloader.pin_memory)
    evaluator = _Evaluator(model, protocol, extra, dict(done=done, on_row=on_row, image_stem=image_stem,
                                                        save_img=save_img, save_grid=save_grid, strict=strict))
    model.timer = evaluator.timer
    steps = math.ceil(math.ceil(len(dataset) / world_size) / batch_size)
    bar = tqdm(total=len(dataset), unit='image', desc=dataset_name, disable=not progress or rank != 0)
    batches = iter(loader)
    try:
        with getattr(model, 'inference_memory', contextlib.nullcontext)():  # freed CPU memory reused across batches
            for _ in range(steps):
                groups, failed = next(batches, ([], []))
                evaluator.name_items(groups, world_size)
                for index, path, reason in failed:
                    evaluator.skip(index, path, f'cannot be read: {reason}', dataset_name)
                for indices, batch in groups:
                    evaluator.evaluate_group(indices, batch, dataset_name)
                bar.update(min(batch_size * world_size, len(dataset) - bar.n))
    finally:
        bar.close()
        model.timer = None
    evaluation = _collect(evaluator, dataset_name, world_size)
    if evaluation.skipped and not evaluation.rows:
        raise RuntimeError(f'dataset {dataset_name}: none of its {len(evaluation.skipped)} images could be read or '
                           f'restored (a problem of the options or the model rather than of single files); '
                           f'the first: {evaluation.skipped[0][0]}: {evaluation.skipped[0][1]}')
    return evaluation


def _collect(evaluator, dataset_name, world_size):
    """Gather every rank's rows, skips and timings into one :class:`DatasetEvaluation`."""
    rows = [row for _, row in sorted(_gathered(evaluator.rows, world_size), key=lambda entry: entry[0])]
    skipped = [(name, reason) for _, name, reason in
               sorted(_gathered(evaluator.skipped, world_size), key=lambda entry: entry[0])]
    timer = StepTimer('cpu')
    for totals, images in _gathered([(dict(evaluator.timer.totals), evaluator.timer.images)], world_size):
        for step, seconds in totals.items():
            timer.totals[step] += seconds
        timer.images += images
    means, counts = {}, {}
    for label in all_metric_labels(evaluator.protocol, evaluator.extra):
        values = [row[label] for row in rows if row.get(label) is not None]
        counts[label] = len(values)
        if values:
            means[label] = sum(values) / len(values)
    return DatasetEvaluation(dataset=dataset_name, protocol=evaluator.protocol, rows=rows, means=means,
                             counts=counts, skipped=skipped, timing_ms=timer.per_image_ms())
