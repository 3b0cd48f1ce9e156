"""Which metrics an evaluation measures, and scoring one restored image with them.

The metrics come from a named :class:`~restorevar_plugin.metrics.protocols.EvaluationProtocol`
(``val.protocol``), changed by ``val.metrics``: an entry with options adds a metric or replaces the
protocol's metric of that label, an entry set to ``~`` removes one. Without ``val.protocol``,
``val.metrics`` alone is the (``custom``) protocol. The protocol's own full-reference metrics are
measured on images with a GT and its no-reference metrics on images without one (the paper's
Tables 1 and 2); metrics added by ``val.metrics`` are measured on every image they can be.

What a metric sees:

* ``calculate_psnr_skimage``, ``calculate_ssim_skimage``, ``calculate_lpips``: the **float** output
  ``(3, H, W)`` clipped to [0, 1] and the float GT, as the official RestoreVAR / PromptIR evaluation
  (scikit-image on float RGB, LPIPS on float tensors), not the 8-bit image;
* every other metric function (BasicSR's ``calculate_psnr`` / ``calculate_ssim`` of ``basicsr_y``,
  ``calculate_niqe``, MUSIQ, CLIPIQA): BasicSR's ``(H, W, 3)`` uint8 BGR arrays from ``tensor2img``
  (rounded), i.e. the saved 8-bit images; the official Table 2 scores its saved images too (which it
  truncates instead of rounding).

A metric that cannot be computed on an image (an exception, e.g. SSIM's window larger than the image
or NIQE's "SVD did not converge", or a non-finite value) gives ``None`` and is logged with the image
name. A missing weight file (``FileNotFoundError``) or a missing package stops the evaluation instead:
it is a setup problem, not the image's.
"""
import dataclasses
import math

from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, tensor2img

from restorevar_plugin.metrics.lpips_metric import lpips_tensor
from restorevar_plugin.metrics.metric_utils import check_metric_options
from restorevar_plugin.metrics.protocols import (
    CUSTOM,
    METRICS,
    get_protocol,
    needs_reference,
)
from restorevar_plugin.metrics.skimage_metric import (
    NEUTRAL_OPTIONS,
    psnr_skimage_tensor,
    ssim_skimage_tensor,
)

SETUP_ERRORS = (FileNotFoundError, ImportError)


def describe_error(error):
    """``'<ExceptionType>: <message>'`` (just the type when the message is empty), for logs and tables."""
    message = str(error)
    return f'{type(error).__name__}: {message}' if message else type(error).__name__


def _psnr_float(pred, gt, **options):
    check_metric_options('calculate_psnr_skimage', options, NEUTRAL_OPTIONS)
    return psnr_skimage_tensor(pred, gt)


def _ssim_float(pred, gt, **options):
    check_metric_options('calculate_ssim_skimage', options, NEUTRAL_OPTIONS)
    return ssim_skimage_tensor(pred, gt)


def _lpips_float(pred, gt, net='alex', device=None, lpips_weights_path=None, backbone_weights_path=None, **options):
    check_metric_options('calculate_lpips', options)
    return lpips_tensor(pred, gt, net, device, lpips_weights_path, backbone_weights_path)


# Registered metric function -> the same measurement on float (3, H, W) tensors in [0, 1].
FLOAT_METRICS = {
    'calculate_psnr_skimage': _psnr_float,
    'calculate_ssim_skimage': _ssim_float,
    'calculate_lpips': _lpips_float,
}

def _describe_options(options):
    details = ', '.join(f'{key}={value}' for key, value in options.items() if key not in ('type', 'better'))
    return f'{options["type"]}({details})'


def resolve_metrics(val_opt):
    """The protocol and the extra metrics of a ``val`` option block (see the module docstring).

    Args:
        val_opt (dict): ``protocol`` (a name of :data:`~restorevar_plugin.metrics.protocols.PROTOCOLS`) and/or
            ``metrics`` (``{label: BasicSR metric options or None}``).

    Returns:
        tuple[EvaluationProtocol, dict]: The protocol without the metrics ``val.metrics`` removed or replaced,
        its ``changes`` saying what changed; and ``{label: options}`` of the added or replacing metrics, each
        with ``better``.

    Raises:
        ValueError: unknown protocol, a metric entry without ``type``, or ``~`` for a metric the protocol lacks.
    """
    explicit = val_opt.get('metrics') or {}
    protocol = get_protocol(val_opt['protocol']) if val_opt.get('protocol') else CUSTOM
    kept, extra, changes = dict(protocol.metrics), {}, []
    for label, options in explicit.items():
        if options is None:
            if label not in kept:
                raise ValueError(f'val.metrics.{label}: ~ removes a metric of the protocol, but protocol '
                                 f'{protocol.name} has no metric {label!r} (it has: {", ".join(protocol.metrics)})')
            del kept[label]
            changes.append(f'{label} removed')
            continue
        if not isinstance(options, dict) or not options.get('type'):
            raise ValueError(f'val.metrics.{label}: expected a mapping with the metric function as type, '
                             f'got {options!r}')
        default_better = METRICS[label].better if label in METRICS else 'higher'
        extra[label] = {**options, 'better': options.get('better', default_better)}
        changes.append(f'{label} {"replaced by" if kept.pop(label, None) else "added:"} {_describe_options(options)}')
    return dataclasses.replace(protocol, metrics=kept, changes='; '.join(changes)), extra


def configured_metrics(val_opt):
    """``{label: BasicSR metric options}`` of every metric a ``val`` block measures (on some image)."""
    protocol, extra = resolve_metrics(val_opt)
    return {**protocol.metric_options(), **extra}


def applicable_metrics(protocol, extra, has_gt):
    """``{label: options}`` measured on an image with (``has_gt``) or without a GT, protocol metrics first."""
    metrics = protocol.metric_options(has_gt)
    metrics.update({label: options for label, options in extra.items()
                    if has_gt or not needs_reference(options['type'])})
    return metrics


def all_metric_labels(protocol, extra):
    """Every label the evaluation may report, in column order."""
    return [*protocol.metrics, *extra]


def score_image(metrics, result, gt, image_name, dataset_name=''):
    """Score one image with each metric; ``None`` where a metric cannot be computed (logged with the name).

    Args:
        metrics (dict): ``{label: BasicSR metric options}`` (from :func:`applicable_metrics`).
        result (Tensor): ``(3, H, W)`` restored image, float, clipped to [0, 1] before scoring.
        gt (Tensor | None): ``(3, H, W)`` ground truth in [0, 1], or None.
        image_name (str): For the log.
        dataset_name (str): For the log.

    Returns:
        dict: ``{label: float or None}``.
    """
    arrays = {}

    def uint8_data():
        if not arrays:
            arrays['img'] = tensor2img(result)
            if gt is not None:
                arrays['img2'] = tensor2img(gt)
        return arrays

    scores = {}
    for label, options in metrics.items():
        metric_type = options['type']
        try:
            if metric_type in FLOAT_METRICS:
                kwargs = {key: value for key, value in options.items() if key != 'type'}
                value = float(FLOAT_METRICS[metric_type](result, gt, **kwargs))
            else:
                data = uint8_data()
                inputs = data if needs_reference(metric_type) else {'img': data['img']}
                value = float(calculate_metric(inputs, options))
            problem = None if math.isfinite(value) else f'the value is {value}'
        except SETUP_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001  (any failure on this image makes the metric n/a here)
            problem = describe_error(error)
        if problem is not None:
            get_root_logger().warning(f'{dataset_name} {image_name}: {label} is n/a ({problem})')
            value = None
        scores[label] = value
    return scores
