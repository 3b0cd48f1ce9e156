"""Paired transforms: the LQ and GT images get the same geometry. Selected by name in dataset options.

* ``restorevar`` (RestoreVAR training; official ``utils/data.py``, ``build_dataset``): the shorter side of
  each image goes to ``round(resize_ratio * crop_size)`` (576 for 512 crops; Lanczos, smaller images are
  upscaled, the longer side truncated as torchvision's ``Resize``), then one random ``crop_size`` crop at the
  same place in both; no flip.
* ``promptir`` (PromptIR / AWRaCLe training): centre crop to a multiple of ``multiple_of``, one random
  ``crop_size`` crop, then one of the 7 non-identity flip/rotation modes.
* ``paper_512`` (RestoreVAR validation and test; official ``utils/data.py`` and ``infer.py``): Lanczos resize
  of each image to ``size`` x ``size``; the aspect ratio is not kept. LQ and GT are resized independently,
  so they may differ in size on disk (``accepts_size_mismatch``).
* ``native`` (PromptIR / AWRaCLe test at full resolution): nothing.

Images are ``(H, W, 3)`` float32 RGB in [0, 1]. Lanczos is Pillow's own, on the 8-bit image, exactly as the
official loader runs it (``PIL.Image.resize`` with ``Image.LANCZOS`` on the ``convert('RGB')`` image,
reached through torchvision's ``Resize``): Pillow chooses the order of its two passes per image shape and
rounds to 8 bits, and both change the greedy tokens RestoreVAR generates. See :func:`lanczos_resize` for
what happens to images that are not 8-bit.
"""
import inspect
from abc import ABC, abstractmethod

import numpy as np
from PIL import Image


def to_uint8(image):
    """``(H, W, C)`` float in [0, 1] -> uint8 by rounding ``255 * x`` (exact inverse of reading an 8-bit file)."""
    return np.clip(np.rint(image * np.float32(255)), 0, 255).astype(np.uint8)


def lanczos_resize(image, height, width):
    """Resize ``(H, W, 3)`` float32 RGB in [0, 1] to ``(height, width, 3)`` with Pillow's 8-bit Lanczos.

    The image is rounded to 8 bits (:func:`to_uint8`; an image read from an 8-bit file is recovered exactly),
    resized by ``PIL.Image.resize(..., Image.LANCZOS)`` as the official RestoreVAR loader does, and divided by
    255 again. 16-bit and float sources are therefore quantised to 8 bits first, by rounding: the official
    loader only ever feeds 8-bit RGB to Pillow, whose ``convert('RGB')`` keeps the high byte of a 16-bit RGB
    file (at most one level from our rounding) and saturates a 16-bit gray one at 255 (not reproduced). The
    output is always on the 8-bit grid, also when the size does not change (Pillow then returns a copy).

    Returns:
        np.ndarray: ``(height, width, 3)`` float32 in [0, 1], values ``k / 255``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'lanczos_resize: expected an (H, W, 3) RGB image, got shape {tuple(image.shape)}')
    resized = Image.fromarray(to_uint8(image)).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized).astype(np.float32) / np.float32(255)


def resize_shorter_side(image, target):
    """Lanczos-resize so that the shorter side is ``target`` (longer side truncated, as torchvision's ``Resize``)."""
    height, width = image.shape[:2]
    if height <= width:
        return lanczos_resize(image, target, int(target * width / height))
    return lanczos_resize(image, int(target * height / width), target)


def clip_geometry(image, size):
    """CLIP's geometric preprocessing as ``clip.load``'s ``preprocess`` runs it on an 8-bit image.

    The image is rounded to 8 bit, its shorter side resized to ``size`` with Pillow's bicubic filter (the
    longer side truncated, as torchvision's ``Resize``), then centre-cropped to ``size`` x ``size``
    (torchvision's ``CenterCrop`` rounding).

    Args:
        image (np.ndarray): ``(H, W, 3)`` float32 RGB in [0, 1].
        size (int): CLIP's input side (224 for ViT-B/32).

    Returns:
        np.ndarray: ``(size, size, 3)`` float32 in [0, 1].
    """
    height, width = image.shape[:2]
    new_h, new_w = (size, int(size * width / height)) if height <= width else (int(size * height / width), size)
    pil = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
    resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return np.ascontiguousarray(resized[top:top + size, left:left + size])


def random_crop(images, size, rng):
    """The same random ``size`` x ``size`` window of every image in ``images`` (all of one size).

    Raises:
        ValueError: An image smaller than ``size``.
    """
    height, width = images[0].shape[:2]
    if height < size or width < size:
        raise ValueError(f'image of {height}x{width} is smaller than the crop size {size}')
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return [image[top:top + size, left:left + size] for image in images]


def center_crop(image, size):
    """The central ``size`` x ``size`` window of ``image`` (at least that large)."""
    height, width = image.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return image[top:top + size, left:left + size]


def crop_to_multiple(image, base):
    """Crop ``image`` so both sides are multiples of ``base``, dropping rows/columns evenly (PromptIR's crop)."""
    height, width = image.shape[:2]
    extra_h, extra_w = height % base, width % base
    return image[extra_h // 2:height - extra_h + extra_h // 2, extra_w // 2:width - extra_w + extra_w // 2]


def flip_rotate(image, mode):
    """One of PromptIR's 8 geometric modes: rotate by ``90 * (mode // 2)`` degrees, then flip up-down if odd."""
    out = np.rot90(image, k=mode // 2)
    return np.flipud(out) if mode % 2 else out


def _check_positive_int(value, name, owner):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f'{owner}: {name} must be a positive integer; got {value!r}')


class PairedTransform(ABC):
    """Base of the named transforms: ``transform(lq, gt, rng) -> (lq, gt)``, ``gt`` may be None.

    ``accepts_size_mismatch`` is True only for transforms that resize both images to a fixed size.
    """
    name = ''
    accepts_size_mismatch = False

    @abstractmethod
    def apply(self, images, rng):
        """Transform the list ``images`` (LQ first) with shared randomness; return the list."""

    @abstractmethod
    def output_size(self, height, width):
        """``(height, width)`` of an image of that size after the transform (what the model and metrics see)."""

    def __call__(self, lq, gt, rng):
        """Transform an LQ image and its GT (or None).

        Args:
            lq (np.ndarray): ``(H, W, 3)`` float32 RGB in [0, 1].
            gt (np.ndarray | None): Same shape as ``lq``, or None for no-reference data.
            rng (numpy.random.Generator): Randomness for crops and flips.

        Returns:
            tuple[np.ndarray, np.ndarray | None]: Contiguous float32 arrays.
        """
        images = [lq] if gt is None else [lq, gt]
        out = [np.ascontiguousarray(image, dtype=np.float32) for image in self.apply(images, rng)]
        return out[0], (out[1] if gt is not None else None)


class RestoreVARTrainTransform(PairedTransform):
    """RestoreVAR training: shorter side to ``round(resize_ratio * crop_size)`` (Lanczos), one random crop."""
    name = 'restorevar'

    def __init__(self, crop_size=512, resize_ratio=1.125):
        _check_positive_int(crop_size, 'crop_size', self.name)
        if not isinstance(resize_ratio, (int, float)) or resize_ratio < 1:
            raise ValueError(f'{self.name}: resize_ratio must be a number >= 1; got {resize_ratio!r}')
        self.crop_size, self.resize_ratio = crop_size, float(resize_ratio)

    def apply(self, images, rng):
        target = round(self.resize_ratio * self.crop_size)
        return random_crop([resize_shorter_side(image, target) for image in images], self.crop_size, rng)

    def output_size(self, height, width):
        """Always the crop: the resize makes every image large enough."""
        return self.crop_size, self.crop_size


class PromptIRTrainTransform(PairedTransform):
    """PromptIR training: crop to a multiple of ``multiple_of``, random ``crop_size`` crop, flip/rotation 1-7."""
    name = 'promptir'

    def __init__(self, crop_size=128, multiple_of=16):
        _check_positive_int(crop_size, 'crop_size', self.name)
        _check_positive_int(multiple_of, 'multiple_of', self.name)
        self.crop_size, self.multiple_of = crop_size, multiple_of

    def apply(self, images, rng):
        cropped = [crop_to_multiple(image, self.multiple_of) for image in images]
        if min(cropped[0].shape[:2]) < self.crop_size:
            height, width = images[0].shape[:2]
            raise ValueError(f'{self.name}: image of {height}x{width}, cropped to multiples of {self.multiple_of}, '
                             f'is smaller than the crop size {self.crop_size}')
        patches = random_crop(cropped, self.crop_size, rng)
        mode = int(rng.integers(1, 8))
        return [flip_rotate(patch, mode) for patch in patches]

    def output_size(self, height, width):
        """The crop (smaller images raise in :meth:`apply`)."""
        return self.crop_size, self.crop_size


class FixedSizeTransform(PairedTransform):
    """RestoreVAR evaluation: Lanczos resize of every image to ``size`` x ``size``."""
    name = 'paper_512'
    accepts_size_mismatch = True

    def __init__(self, size=512):
        _check_positive_int(size, 'size', self.name)
        self.size = size

    def apply(self, images, rng):
        return [lanczos_resize(image, self.size, self.size) for image in images]

    def output_size(self, height, width):
        """``size`` x ``size``, whatever the input."""
        return self.size, self.size


class NativeTransform(PairedTransform):
    """No resize, no crop: images at their native resolution."""
    name = 'native'

    def apply(self, images, rng):
        return images

    def output_size(self, height, width):
        """The input's size."""
        return height, width


TRANSFORMS = {cls.name: cls for cls in (RestoreVARTrainTransform, PromptIRTrainTransform, FixedSizeTransform,
                                        NativeTransform)}


def build_transform(spec, where='transform'):
    """Build a transform from its option: a name, or a mapping ``{type: name, **parameters}``.

    Args:
        spec (str | dict): e.g. ``'paper_512'`` or ``{'type': 'restorevar', 'crop_size': 256}``.
        where (str): Option name used in error messages.

    Raises:
        ValueError: Unknown name or parameter, or a bad parameter value.
    """
    params = dict(spec) if isinstance(spec, dict) else {'type': spec}
    name = params.pop('type', None)
    if name not in TRANSFORMS:
        raise ValueError(f'{where}: unknown transform {name!r}; expected one of {", ".join(TRANSFORMS)}')
    cls = TRANSFORMS[name]
    accepted = list(inspect.signature(cls.__init__).parameters)[1:]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f'{where}: transform {name} has no parameter(s) {", ".join(unknown)}; '
                         f'accepted: {", ".join(accepted) or "none"}')
    return cls(**params)
