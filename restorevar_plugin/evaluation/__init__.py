"""The one evaluation path of every model of the package (RestoreVAR, RestorationModel and its subclasses).

* :func:`evaluate_dataset` -> :class:`DatasetEvaluation`: restore, score under an
  :class:`~restorevar_plugin.metrics.protocols.EvaluationProtocol`, save images and grids, time (module
  :mod:`~restorevar_plugin.evaluation.loop`);
* :func:`resolve_metrics`: the protocol and metrics of a ``val`` block (:mod:`~restorevar_plugin.evaluation.scoring`);
* :func:`write_metrics_csv`, :func:`write_metrics_markdown`, :func:`read_metrics_csv`
  (:mod:`~restorevar_plugin.evaluation.tables`);
* :func:`validate`: what the models' ``nondist_validation`` / ``dist_validation`` run
  (:mod:`~restorevar_plugin.evaluation.validation`).
"""
from restorevar_plugin.evaluation.loop import (
           DatasetEvaluation,
           StepTimer,
           evaluate_dataset,
           unique_image_name,
)
from restorevar_plugin.evaluation.scoring import (
           configured_metrics,
           resolve_metrics,
           score_image,
)
from restorevar_plugin.evaluation.tables import (
           read_metrics_csv,
           write_metrics_csv,
           write_metrics_markdown,
)
from restorevar_plugin.evaluation.validation import validate

__all__ = ['DatasetEvaluation', 'StepTimer', 'evaluate_dataset', 'unique_image_name', 'resolve_metrics',
           'configured_metrics', 'score_image', 'read_metrics_csv', 'write_metrics_csv', 'write_metrics_markdown',
           'validate']
