"""INTERIM stand-in for ``restorevar_plugin.evaluation`` (the shared evaluation loop), used by the benchmark
until that module is merged; it implements the agreed signature and nothing more (no image saving).

``evaluate_dataset`` runs a BasicSR model (``feed_data`` / ``test`` / ``get_current_visuals``, visuals
``(B, 3, H, W)`` in [0, 1]) over a dataloader and scores every image with the protocol's BasicSR metric
functions on ``tensor2img`` images (8-bit, as BasicSR's own validation does): the full-reference metrics on
images with a GT, the no-reference metrics on images without one (RestoreVAR's Tables 1 and 2); a metric that
does not apply to an image is absent from its row. The bar is labelled with the dataset option ``name``.
"""
import time
from copy import deepcopy
from dataclasses import dataclass, field

import torch
from basicsr.metrics import calculate_metric
from basicsr.utils import tensor2img
from tqdm import tqdm

from restorevar_plugin.metrics.protocols import METRICS, needs_reference
from restorevar_plugin.models.restorevar_model import unique_image_name

MEASUREMENT_NOTE = ('Scores measured on the 8-bit outputs (tensor2img, rounded) by the interim evaluation loop of the '
                    'benchmark, not on the float outputs.')


@dataclass
class DatasetEvaluation:
    """Per-image rows and means of one dataset under one protocol (see EVALUATION_API)."""

    dataset: str
    protocol: object
    rows: list
    means: dict
    counts: dict
    skipped: list = field(default_factory=list)
    timing_ms: dict = field(default_factory=dict)


def _synchronize(device):
    if device is not None and torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def evaluate_dataset(model, dataloader, protocol, *, extra_metrics=None, save_dir=None, save_img=False,
                     save_grid=False, strict=False, done=None, on_row=None, progress=True):
    """Restore and score every image of ``dataloader``; rows named in ``done`` are reused, not re-run.

    Args:
        model: BasicSR model. dataloader: yields dicts with ``lq`` (and ``gt``) ``(B, 3, H, W)`` in [0, 1] and
            ``lq_path``. protocol (EvaluationProtocol): Metrics to compute.
        save_dir, save_img, save_grid: Not supported by this stand-in (must be left at their defaults).
        strict (bool): Unused (no image is skipped here). done (dict | None): ``{image: row}`` to reuse.
        on_row (callable | None): Called with every newly computed row. progress (bool): Own tqdm bar.

    Returns:
        DatasetEvaluation: Rows ``{'image', <metric key>: float, 'time_s'}`` in dataset order.
    """
    if save_img or save_grid or save_dir is not None:
        raise ValueError('interim evaluate_dataset does not save images; leave save_dir/save_img/save_grid unset')
    done = done or {}
    metric_options = protocol.metric_options()
    device = getattr(model, 'device', None)
    rows, used = [], set()
    dataset_name = (getattr(dataloader.dataset, 'opt', None) or {}).get('name', '')
    for batch in tqdm(dataloader, unit='batch', desc=dataset_name, disable=not progress):
        names = [unique_image_name(path, used) for path in batch['lq_path']]
        if all(name in done for name in names):
            rows.extend(done[name] for name in names)
            continue
        _synchronize(device)
        start = time.perf_counter()
        model.feed_data(batch)
        model.test()
        visuals = model.get_current_visuals()
        _synchronize(device)
        seconds = (time.perf_counter() - start) / len(names)
        for index, name in enumerate(names):
            data = {'img': tensor2img(visuals['result'][index])}
            if 'gt' in visuals:
                data['img2'] = tensor2img(visuals['gt'][index])
            row = {'image': name}
            for key, options in metric_options.items():
                if METRICS[key].needs_reference == ('img2' in data):
                    row[key] = float(calculate_metric(data, deepcopy(options)))
            for key, options in (extra_metrics or {}).items():
                if 'img2' in data or not needs_reference(options['type']):
                    row[key] = float(calculate_metric(data, deepcopy(options)))
            row['time_s'] = seconds
            rows.append(row)
            if on_row is not None:
                on_row(row)
    means, counts = {}, {}
    for key in [*metric_options, *(extra_metrics or {})]:
        values = [row[key] for row in rows if row.get(key) is not None]
        counts[key] = len(values)
        if values:
            means[key] = sum(values) / len(values)
    return DatasetEvaluation(dataset=dataset_name, protocol=protocol, rows=rows, means=means, counts=counts)
