"""Writing restored images back in their source's layout: bit depth, gray, alpha, format limits, atomic writes."""
import os

import cv2
import numpy as np
import pytest

from restorevar_plugin.atomic_files import write_bytes_whole
from restorevar_plugin.data.image_io import (
    ImageInfo,
    decode_image_layers,
    encode_image_like,
)


def decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_layers_round_trip_exactly_for_16_bit_rgba():
    raw = np.random.default_rng(0).integers(0, 65536, size=(5, 7, 4), dtype=np.uint16)
    layers = decode_image_layers(cv2.imencode('.png', raw)[1].tobytes(), 'x.png')
    assert layers.info == ImageInfo(5, 7, 4, 16)
    np.testing.assert_array_equal(layers.alpha, raw[..., 3])
    np.testing.assert_allclose(layers.rgb, raw[..., 2::-1] / 65535, atol=1e-7)
    np.testing.assert_array_equal(decode(encode_image_like(layers.rgb, layers.info, layers.alpha, '.png')), raw)


def test_colour_output_of_a_gray_source_becomes_bt601_luma():
    rgb = np.zeros((2, 3, 3), np.float32)
    rgb[..., 0] = 1.0  # pure red
    out = decode(encode_image_like(rgb, ImageInfo(2, 3, 1, 8), None, '.png'))
    assert out.shape == (2, 3) and np.all(out == round(0.299 * 255))


def test_formats_without_16_bits_get_8_bits_scaled_not_saturated():
    rgb = np.full((4, 4, 3), 40000 / 65535, np.float32)
    deep = ImageInfo(4, 4, 3, 16)
    assert decode(encode_image_like(rgb, deep, None, '.png')).dtype == np.uint16
    for suffix in ('.jpg', '.webp', '.bmp'):
        out = decode(encode_image_like(rgb, deep, None, suffix))
        assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - round(40000 / 257)) <= 1, suffix
    floats = ImageInfo(4, 4, 3, 32)
    assert decode(encode_image_like(rgb, floats, None, '.tif')).dtype == np.float32
    alpha = np.full((4, 4), 0.5, np.float32)
    out = decode(encode_image_like(rgb, floats, alpha, '.png'))
    assert out.dtype == np.uint16 and out[0, 0, 3] == 32768


def test_bad_alpha_and_atomic_write(tmp_path):
    with pytest.raises(ValueError, match='alpha of shape'):
        encode_image_like(np.zeros((4, 4, 3)), ImageInfo(4, 4, 4, 8), np.zeros((3, 4), np.uint8), '.png')
    for suffix in ('.jpg', '.JPEG'):
        with pytest.raises(ValueError, match='cannot hold the alpha channel'):
            encode_image_like(np.zeros((4, 4, 3)), ImageInfo(4, 4, 4, 8), np.zeros((4, 4), np.uint8), suffix)
    rgb_only = decode(encode_image_like(np.zeros((4, 4, 3)), ImageInfo(4, 4, 3, 8), None, '.jpg'))
    assert rgb_only.shape == (4, 4, 3)
    target = tmp_path / 'deep' / 'out.png'
    write_bytes_whole(target, b'abc')
    write_bytes_whole(target, b'defg')
    assert target.read_bytes() == b'defg' and os.listdir(target.parent) == ['out.png']
