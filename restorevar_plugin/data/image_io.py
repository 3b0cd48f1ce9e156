"""Reading images through BasicSR's ``FileClient``, with every conversion to RGB float32 documented.

Every image the plugin reads becomes an ``(H, W, 3)`` float32 RGB array in [0, 1]:

* 8-bit images are divided by 255, **16-bit** images by 65535 (PIL's ``convert('RGB')``, used by the
  official RestoreVAR loader, would clip them to 8 bits instead), float images are clipped to [0, 1];
* **grayscale** images are repeated to three channels;
* the **alpha** channel of RGBA / gray+alpha images is dropped without compositing, as PIL's
  ``convert('RGB')`` in the official loader does (the colour values are kept as stored);
* a file that cannot be decoded (unreadable, truncated, not an image) raises :class:`ImageReadError`
  naming it: nothing is silently replaced.

Paths are read from disk, except a path that runs through a folder ending in ``.lmdb``
(``/data/lq.lmdb/0001``), which is read as key ``0001`` of that LMDB database (BasicSR's ``lmdb``
backend, the layout written by ``basicsr.utils.lmdb_util``).

For writing a restored image back in its file's own layout (``basicsr restore``), :func:`decode_image_layers`
also returns the alpha channel as stored and :func:`encode_image_like` turns RGB float32 back into the
source's bit depth (8, 16 or float) and channels (gray: ITU-R BT.601 luma; alpha appended unchanged);
:func:`~restorevar_plugin.atomic_files.write_bytes_whole` writes the bytes whole or not at all. OpenCV decodes
gray+alpha PNGs as four channels, so those come back as RGBA files.
"""
from pathlib import PurePath
from typing import NamedTuple, Optional

import cv2
import lmdb
import numpy as np
from basicsr.utils import FileClient

LMDB_SUFFIX = '.lmdb'


class ImageReadError(OSError):
    """An image file is missing, unreadable, truncated or in an unsupported format."""


class ImageInfo(NamedTuple):
    """What a file held before conversion: ``height``, ``width``, ``channels`` (1-4), ``bit_depth`` (8, 16 or 32)."""
    height: int
    width: int
    channels: int
    bit_depth: int

    def conversions(self):
        """Names of the documented conversions :func:`decode_image` applied (empty for 8-bit RGB)."""
        notes = []
        if self.bit_depth == 16:
            notes.append('16-bit -> float')
        elif self.bit_depth == 32:
            notes.append('float, clipped to [0,1]')
        if self.channels in (1, 2):
            notes.append('gray -> 3 channels')
        if self.channels in (2, 4):
            notes.append('alpha dropped')
        return notes


def split_lmdb_path(path):
    """Split ``<db>.lmdb/<key>`` into ``(db_path, key)``; ``(None, path)`` for an ordinary file path."""
    parts = PurePath(path).parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index].endswith(LMDB_SUFFIX):
            return str(PurePath(*parts[:index + 1])), '/'.join(parts[index + 1:])
    return None, str(path)


SCALES = {np.dtype(np.uint8): (8, 255.0), np.dtype(np.uint16): (16, 65535.0), np.dtype(np.float32): (32, 1.0)}
DTYPES = {bit_depth: dtype for dtype, (bit_depth, _) in SCALES.items()}
FORMAT_BIT_DEPTHS = {'.png': (8, 16), '.tif': (8, 16, 32), '.tiff': (8, 16, 32)}  # every other format: 8 bits
FORMATS_WITHOUT_ALPHA = ('.jpg', '.jpeg')  # OpenCV's JPEG encoder drops a fourth channel without a message


class ImageLayers(NamedTuple):
    """A decoded file split for restoration: ``rgb`` ``(H, W, 3)`` float32 in [0, 1] (as :func:`decode_image`),
    ``alpha`` ``(H, W)`` exactly as stored (the file's dtype) or None, and the file's :class:`ImageInfo`."""
    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    info: ImageInfo


def decode_image_layers(data, path):
    """Decode encoded image bytes into RGB float32 plus the stored alpha channel.

    Args:
        data (bytes): The encoded file content (PNG, JPEG, TIFF, BMP, WebP, ...).
        path (str): The file's path, only used in error messages.

    Returns:
        ImageLayers: RGB (conversions: module docstring), alpha (None without one) and what the file held.

    Raises:
        ImageReadError: Empty, truncated or undecodable data, or an unsupported pixel type.
    """
    if not data:
        raise ImageReadError(f'{path}: the file is empty')
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageReadError(f'{path}: cannot be decoded as an image (unreadable, truncated or not an image file)')
    if raw.dtype not in SCALES:
        raise ImageReadError(f'{path}: unsupported pixel type {raw.dtype}; expected 8-bit, 16-bit or float32 images')
    bit_depth, scale = SCALES[raw.dtype]
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageReadError(f'{path}: {channels} channels; expected gray, gray+alpha, RGB or RGBA')
    info = ImageInfo(raw.shape[0], raw.shape[1], channels, bit_depth)
    alpha = raw[..., -1].copy() if channels in (2, 4) else None
    image = raw.astype(np.float32) / np.float32(scale)
    if bit_depth == 32:
        image = np.clip(image, 0.0, 1.0)
    if channels in (1, 2):
        gray = image if channels == 1 else image[..., 0]
        return ImageLayers(np.repeat(gray[..., None], 3, axis=2), alpha, info)
    return ImageLayers(np.ascontiguousarray(image[..., 2::-1]), alpha, info)


def decode_image(data, path):
    """Decode encoded image bytes into RGB float32 (see the module docstring for the conversions).

    Returns:
        tuple[np.ndarray, ImageInfo]: ``(H, W, 3)`` float32 RGB in [0, 1], and what the file held.

    Raises:
        ImageReadError: See :func:`decode_image_layers`.
    """
    layers = decode_image_layers(data, path)
    return layers.rgb, layers.info


def _to_dtype(values, dtype):
    """Values already scaled to ``dtype``'s range: rounded for integer types, cast for float32."""
    return values.astype(dtype) if dtype == np.float32 else np.round(values).astype(dtype)


def check_alpha_fits(alpha, suffix):
    """Raise ``ValueError`` when ``alpha`` (an ``(H, W)`` array, or None) is given for a format of
    :data:`FORMATS_WITHOUT_ALPHA` (``suffix`` such as ``'.jpg'``), which would lose it."""
    if alpha is not None and suffix.lower() in FORMATS_WITHOUT_ALPHA:
        raise ValueError(f'{suffix} cannot hold the alpha channel of this image; name a .png, .webp, .tif or .bmp '
                         'output to keep it')


def encode_image_like(rgb, info, alpha, suffix):
    """Encode an RGB image in the layout of the file ``info`` describes.

    Args:
        rgb (np.ndarray): ``(H, W, 3)`` float RGB; clipped to [0, 1].
        info (ImageInfo): The source file's layout: gray sources (1 channel) get BT.601 luma, the values
            are rounded to ``info.bit_depth`` (8, 16) or kept float32 (32); a format that cannot hold that depth
            (:data:`FORMAT_BIT_DEPTHS`: only PNG and TIFF hold 16 bits, only TIFF float) gets its deepest one.
        alpha (np.ndarray | None): ``(H, W)`` alpha as stored in the source, appended last (BGRA / gray+alpha
            become four channels, OpenCV writes no two-channel images).
        suffix (str): Format extension, e.g. ``'.png'``.

    Returns:
        bytes: The encoded file.

    Raises:
        ValueError: The format cannot hold this layout (OpenCV refuses the encoding, or ``alpha`` is given for a
            format of :data:`FORMATS_WITHOUT_ALPHA`), or ``alpha`` does not match ``rgb``'s size.
    """
    check_alpha_fits(alpha, suffix)
    extension = suffix.lower()
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    depths = FORMAT_BIT_DEPTHS.get(extension, (8, ))
    dtype = DTYPES[max(depth for depth in depths if depth <= info.bit_depth)]
    scale = SCALES[np.dtype(dtype)][1]
    if info.channels == 1:
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        pixels = rgb[..., ::-1]
    pixels = _to_dtype(pixels * np.float32(scale), dtype)
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f'alpha of shape {alpha.shape} does not match the image {rgb.shape[:2]}')
        if alpha.dtype != dtype:
            alpha = _to_dtype(alpha.astype(np.float64) * (scale / SCALES[alpha.dtype][1]), dtype)
        pixels = np.concatenate([pixels, alpha[..., None]], axis=2)
    try:
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(pixels))
    except cv2.error as error:
        raise ValueError(f'cannot encode a {pixels.shape} {pixels.dtype} image as {suffix}: {error}') from error
    if not ok:
        raise ValueError(f'cannot encode a {pixels.shape} {pixels.dtype} image as {suffix}')
    return encoded.tobytes()


class ImageReader:
    """Reads image files with BasicSR's ``FileClient`` (``disk``, or ``lmdb`` for ``<db>.lmdb/<key>`` paths).

    The clients are created on first use, so a reader built in the main process can be copied into
    DataLoader workers before any LMDB environment is opened.
    """

    def __init__(self):
        self._disk = None
        self._lmdb = {}

    def read_bytes(self, path):
        """The raw bytes of ``path``; :class:`ImageReadError` naming the file when it cannot be read."""
        db_path, key = split_lmdb_path(path)
        try:
            if db_path is None:
                if self._disk is None:
                    self._disk = FileClient('disk')
                return self._disk.get(key)
            if db_path not in self._lmdb:
                self._lmdb[db_path] = FileClient('lmdb', db_paths=[db_path], client_keys=[db_path])
            data = self._lmdb[db_path].get(key, db_path)
        except OSError as error:
            raise ImageReadError(f'{path}: cannot be read ({error.strerror or error})') from error
        except lmdb.Error as error:
            raise ImageReadError(f'{path}: cannot be read from LMDB {db_path} ({error})') from error
        if data is None:
            raise ImageReadError(f'{path}: key {key!r} is not in LMDB database {db_path}')
        return data

    def read(self, path):
        """``(H, W, 3)`` float32 RGB in [0, 1] (conversions: module docstring)."""
        return decode_image(self.read_bytes(path), path)[0]

    def read_with_info(self, path):
        """``(image, ImageInfo)``: the converted image and what the file held (for ``check-data``)."""
        return decode_image(self.read_bytes(path), path)

    def read_layers(self, path):
        """:class:`ImageLayers` of ``path``: RGB, the stored alpha and the file's layout (for ``restore``)."""
        return decode_image_layers(self.read_bytes(path), path)
