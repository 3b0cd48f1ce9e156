"""Evaluation protocols and metric facts as data, so every results table can say how it was measured.

Numbers from different papers are comparable only under one protocol: RestoreVAR resizes input and GT
to 512x512 before measuring, PromptIR measures full-size images, BasicSR papers use the Y channel
and a border crop. :data:`PROTOCOLS` names each one; :meth:`EvaluationProtocol.describe` gives the
line to print under a table and :meth:`EvaluationProtocol.metric_options` the BasicSR ``val.metrics``
entries that implement it. :data:`METRICS` carries each metric's direction (``lower_better``), which
also gives BasicSR's ``better:`` value.

A protocol's full-reference metrics are measured on images with a GT and its no-reference metrics on
images without one, as RestoreVAR reports them (Table 1: PSNR / SSIM / LPIPS on the paired test sets;
Table 2: MUSIQ / CLIPIQA on the sets without GT). Option files name a protocol with ``val.protocol``
(:func:`get_protocol`); ``val.metrics`` changes it (:func:`restorevar_plugin.evaluation.resolve_metrics`).
"""
import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """Facts about one metric, independent of the implementation.

    Attributes:
        label (str): Column header, e.g. ``'PSNR'``.
        lower_better (bool): True when smaller values are better (LPIPS).
        needs_reference (bool): False for no-reference metrics (MUSIQ, CLIPIQA).
        unit (str): Unit for table headers (``'dB'`` or ``''``).
    """

    label: str
    lower_better: bool
    needs_reference: bool
    unit: str = ''

    @property
    def better(self):
        """BasicSR's ``better`` option value: ``'lower'`` or ``'higher'``."""
        return 'lower' if self.lower_better else 'higher'


METRICS = {
    'psnr': MetricInfo('PSNR', lower_better=False, needs_reference=True, unit='dB'),
    'ssim': MetricInfo('SSIM', lower_better=False, needs_reference=True),
    'lpips': MetricInfo('LPIPS', lower_better=True, needs_reference=True),
    'musiq': MetricInfo('MUSIQ', lower_better=False, needs_reference=False),
    'clipiqa': MetricInfo('CLIPIQA', lower_better=False, needs_reference=False),
}


@dataclass(frozen=True)
class EvaluationProtocol:
    """How a paper measures its numbers.

    Attributes:
        name (str): Identifier, e.g. ``'restorevar_paper'``.
        source (str): Whose protocol it is and where it is defined.
        resize (str): Resizing of input and GT before restoration and measurement.
        crop (str): Cropping before measurement.
        colour_space (str): Channels the metrics see.
        value_range (str): Pixel representation the metrics see (float/uint8, range, rounding).
        library (str): Implementations of the full-reference metrics.
        ssim_window (str): SSIM window and covariance estimate.
        lpips (str): LPIPS variant and input range, or ``'not reported'``.
        image_format (str): How restored images are stored (matters for metrics computed from files).
        metrics (dict): Metric key (of :data:`METRICS`) -> BasicSR metric function and its options.
        changes (str): How the option file changed the metrics (``val.metrics``), empty when it did not.
    """

    name: str
    source: str
    resize: str
    crop: str
    colour_space: str
    value_range: str
    library: str
    ssim_window: str
    lpips: str
    image_format: str
    metrics: dict
    changes: str = ''

    def describe(self):
        """One line to print under a results table."""
        line = (f'Protocol {self.name} ({self.source}): {self.library}; {self.colour_space}, {self.value_range}; '
                f'resize: {self.resize}; crop: {self.crop}; SSIM: {self.ssim_window}; LPIPS: {self.lpips}; '
                f'images: {self.image_format}; metrics: {", ".join(self.metrics) or "none"}.')
        return f'{line} Changed by val.metrics: {self.changes}.' if self.changes else line

    def metric_options(self, has_gt=None):
        """BasicSR ``val.metrics`` entries for this protocol, each with ``better`` from :data:`METRICS`.

        Args:
            has_gt (bool | None): True: the full-reference metrics (measured on images with a GT); False:
                the no-reference ones (images without GT); None: all.
        """
        return {key: {**options, 'better': METRICS[key].better} for key, options in self.metrics.items()
                if has_gt is None or METRICS[key].needs_reference == has_gt}


RESTOREVAR_PAPER = EvaluationProtocol(
    name='restorevar_paper',
    source='RestoreVAR infer.py --calc_metrics (Table 1) and calc_metric.py (Table 2)',
    resize='input and GT Lanczos-resized to 512x512 (aspect ratio not kept), output kept at 512x512',
    crop='none',
    colour_space='RGB',
    value_range='float in [0, 1] clipped, measured before the 8-bit conversion; saved images truncated (x*255)',
    library='scikit-image PSNR/SSIM (data_range 1), LPIPS, pyiqa MUSIQ (KonIQ) and CLIPIQA on the saved images',
    ssim_window='skimage default: 7x7 uniform, sample covariance, per-channel mean',
    lpips='AlexNet v0.1, inputs in [-1, 1] (torchmetrics in the official code)',
    image_format='original extension; CDD and LOLBlur outputs as JPEG quality 95; at most 5001 images per set',
    metrics={
        'psnr': {'type': 'calculate_psnr_skimage'},
        'ssim': {'type': 'calculate_ssim_skimage'},
        'lpips': {'type': 'calculate_lpips', 'net': 'alex'},
        'musiq': {'type': 'calculate_musiq'},
        'clipiqa': {'type': 'calculate_clipiqa'},
    },
)

PROMPTIR_NATIVE = EvaluationProtocol(
    name='promptir',
    source='PromptIR test.py / utils/val_utils.py (also AWRaCLe test)',
    resize='none (full resolution)',
    crop='input and GT centre-cropped to a multiple of 16 before restoration (crop_img base 16), no border crop',
    colour_space='RGB',
    value_range='float in [0, 1] clipped, measured before any 8-bit conversion',
    library='scikit-image PSNR/SSIM (data_range 1)',
    ssim_window='skimage default: 7x7 uniform, sample covariance, per-channel mean (multichannel=True)',
    lpips='not reported',
    image_format='not stored for the metrics',
    metrics={
        'psnr': {'type': 'calculate_psnr_skimage'},
        'ssim': {'type': 'calculate_ssim_skimage'},
    },
)

BASICSR_Y = EvaluationProtocol(
    name='basicsr_y',
    source="BasicSR calculate_psnr / calculate_ssim with test_y_channel (SR and many restoration papers)",
    resize='none (full resolution)',
    crop='crop_border pixels on each side (0 for restoration at scale 1)',
    colour_space='Y of YCbCr (BT.601, MATLAB rgb2ycbcr)',
    value_range='uint8 [0, 255] from tensor2img (rounded)',
    library='BasicSR calculate_psnr / calculate_ssim',
    ssim_window='MATLAB-style 11x11 Gaussian, sigma 1.5',
    lpips='not reported',
    image_format='PNG',
    metrics={
        'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': True},
        'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': True},
    },
)

# What a val block without a named protocol measures (its val.metrics only); not selectable by name.
CUSTOM = EvaluationProtocol(
    name='custom',
    source='no named protocol, val.metrics only',
    resize='as the dataset does',
    crop='per metric options',
    colour_space='per metric options',
    value_range='float in [0, 1] clipped for *_skimage and calculate_lpips, else uint8 from tensor2img (rounded)',
    library='the metric functions of val.metrics',
    ssim_window='per SSIM function',
    lpips='per val.metrics',
    image_format='PNG',
    metrics={},
)


PROTOCOLS = {protocol.name: protocol for protocol in (RESTOREVAR_PAPER, PROMPTIR_NATIVE, BASICSR_Y)}

NO_REFERENCE_METRIC_TYPES = frozenset(
    {options['type'] for protocol in PROTOCOLS.values() for key, options in protocol.metrics.items()
     if not METRICS[key].needs_reference} | {'calculate_niqe'})


def get_protocol(name):
    """The protocol called ``name`` (``val.protocol``).

    Raises:
        ValueError: unknown name; the message lists the known ones and the closest.
    """
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    close = difflib.get_close_matches(str(name), PROTOCOLS, n=1)
    hint = f' Did you mean {close[0]}?' if close else ''
    raise ValueError(f'val.protocol: unknown protocol {name!r}; known: {", ".join(PROTOCOLS)}.{hint}')


def needs_reference(metric_type):
    """Whether the registered metric function ``metric_type`` compares against a ground truth (``img2``)."""
    return metric_type not in NO_REFERENCE_METRIC_TYPES
