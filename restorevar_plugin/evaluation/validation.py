"""``validate``: the ``nondist_validation`` / ``dist_validation`` body of every model of the package.

Options under ``val`` (BasicSR's plus ours):

* ``protocol``: ``restorevar_paper | promptir | basicsr_y`` (the metrics), ``metrics``: changes to it or,
  without a protocol, the metrics themselves (:func:`~restorevar_plugin.evaluation.scoring.resolve_metrics`);
* ``save_img`` (restored 8-bit PNGs), ``save_grid`` (``[input | output | GT]`` strips, default: as
  ``save_img``), ``suffix`` (test-time file suffix, default: the run name), ``pbar``;
* ``strict``: stop at an unreadable image instead of skipping it and counting it in the tables.

Images go to ``<visualization>/<dataset>/<image>_<suffix>.png`` at test time and to BasicSR's
``<visualization>/<image>/<image>_<iter>.png`` in training. Every rank evaluates its share; rank 0
logs (with the protocol record), writes tensorboard scalars and, at test time, the tables
``<results_root>/<dataset>_metrics.csv`` and ``<dataset>_metrics.md``. BasicSR's best-metric record is
updated on every rank.
"""
from pathlib import Path

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info

from restorevar_plugin.evaluation.loop import evaluate_dataset
from restorevar_plugin.evaluation.scoring import configured_metrics, resolve_metrics
from restorevar_plugin.evaluation.tables import (
    log_text,
    write_metrics_csv,
    write_metrics_markdown,
)


def _update_best(model, evaluation, metric_options, current_iter):
    """BasicSR's best-metric bookkeeping (``best_metric_results``) for the means of ``evaluation``."""
    if not hasattr(model, 'best_metric_results'):
        model.best_metric_results = {}
    record = model.best_metric_results.setdefault(evaluation.dataset, {})
    for label, value in evaluation.means.items():
        if label not in record:
            better = metric_options[label].get('better', 'higher')
            record[label] = dict(better=better, val=float('-inf') if better == 'higher' else float('inf'), iter=-1)
        model._update_best_metric_result(evaluation.dataset, label, value, current_iter)


def validate(model, dataloader, current_iter, tb_logger, save_img):
    """Evaluate ``model`` on ``dataloader`` as configured under ``val`` (see the module docstring).

    Args:
        model (BaseModel): A BasicSR model of this package.
        dataloader (DataLoader): The validation or test set.
        current_iter (int | str): Training iteration, or the run name at test time (BasicSR's convention).
        tb_logger (SummaryWriter | None): Receives ``metrics/<dataset>/<label>`` and ``time_ms/<dataset>/<step>``.
        save_img (bool): Save the restored images.

    Returns:
        DatasetEvaluation: The evaluation (the same on every rank).
    """
    val_opt = model.opt.get('val') or {}
    protocol, extra = resolve_metrics(val_opt)
    dataset_name = dataloader.dataset.opt['name']
    visualization = Path(model.opt['path']['visualization'])
    if model.is_train:
        def image_stem(name):
            return visualization / name / f'{name}_{current_iter}'
    else:
        suffix = val_opt.get('suffix') or model.opt['name']

        def image_stem(name):
            return visualization / dataset_name / f'{name}_{suffix}'
    evaluation = evaluate_dataset(model, dataloader, protocol, extra_metrics=extra, image_stem=image_stem,
                                  save_img=save_img, save_grid=val_opt.get('save_grid', save_img),
                                  strict=bool(val_opt.get('strict', False)), progress=bool(val_opt.get('pbar', False)))
    _update_best(model, evaluation, configured_metrics(val_opt), current_iter)
    if get_dist_info()[0] != 0:
        return evaluation
    get_root_logger().info(log_text(evaluation, model.best_metric_results[dataset_name]))
    if tb_logger:
        for label, value in evaluation.means.items():
            tb_logger.add_scalar(f'metrics/{dataset_name}/{label}', value, current_iter)
        for step, value in evaluation.timing_ms.items():
            tb_logger.add_scalar(f'time_ms/{dataset_name}/{step}', value, current_iter)
    if not model.is_train:
        results = Path(model.opt['path']['results_root'])
        write_metrics_csv(evaluation, results / f'{dataset_name}_metrics.csv')
        write_metrics_markdown(evaluation, results / f'{dataset_name}_metrics.md')
    return evaluation
