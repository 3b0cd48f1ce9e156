"""``SyntheticDegradationDataset``: clean images degraded on the fly (the demo's and the tests' data).

The clean images are those scikit-image ships (no download), with a fixed held-out split, or the
images of a folder::

    datasets:
      train:
        name: synthetic_train
        type: SyntheticDegradationDataset
        degradations: [haze, rain, snow, low_light, blur]   # default; mixes such as haze+rain allowed
        split: train            # bundled images: train (7) or val (2); default train in the train phase, else val
        clean_folder: ~         # optional folder of clean images instead of the bundled ones (no split)
        size: 64                # side of the square crops returned
        load_size: 96           # shorter side the clean image is resized to first (default 1.5 * size)
        seed: 0

Item ``i`` uses clean image ``i // len(degradations)`` and degradation ``i % len(degradations)``.
Train items take a random crop and random degradation parameters (seeded, see
:mod:`restorevar_plugin.data.item_randomness`); val/test items take the centre crop and the same
degradation every epoch. Items are the dict of ``MultiDegradationPairedDataset``: ``lq``, ``gt``
(``(3, size, size)`` float32 RGB in [0, 1]), ``lq_path``, ``gt_path``, ``degradation``, ``dataset``;
``lq_path`` is a virtual, unique ``<image>_<degradation>_<index>.png`` name (BasicSR names saved
images after it).
"""
import os

import numpy as np
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from skimage import data as skimage_data
from torch.utils import data

from restorevar_plugin.data.dataset_meta import IMAGE_EXTENSIONS
from restorevar_plugin.data.degradations import degrade, parse_degradation
from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.data.item_randomness import item_rng
from restorevar_plugin.data.option_checks import dataset_label, reject_unknown_options
from restorevar_plugin.data.transforms import center_crop, random_crop, resize_shorter_side

BUNDLED_SPLITS = {
    'train': ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'stereo_motorcycle_left',
              'stereo_motorcycle_right'),
    'val': ('chelsea', 'coffee'),
}
DEFAULT_DEGRADATIONS = ('haze', 'rain', 'snow', 'low_light', 'blur')
OPTION_KEYS = ('degradations', 'split', 'clean_folder', 'size', 'load_size', 'seed')


def bundled_image(name):
    """A clean RGB image shipped with scikit-image, ``(H, W, 3)`` float32 in [0, 1].

    Args:
        name (str): One of the names in :data:`BUNDLED_SPLITS` (``stereo_motorcycle_left``/``_right``
            are the two views of ``skimage.data.stereo_motorcycle``).
    """
    if name.startswith('stereo_motorcycle_'):
        left, right, _ = skimage_data.stereo_motorcycle()
        image = left if name.endswith('left') else right
    else:
        image = getattr(skimage_data, name)()
    return image.astype(np.float32) / 255.0


@DATASET_REGISTRY.register()
class SyntheticDegradationDataset(data.Dataset):
    """Clean images (bundled or from a folder) degraded on the fly; see the module docstring for options.

    Args:
        opt (dict): Dataset options.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        where = dataset_label(opt, 'SyntheticDegradationDataset')
        reject_unknown_options(opt, OPTION_KEYS, where)
        self.phase = opt.get('phase', 'train')
        self.degradations = list(opt.get('degradations', DEFAULT_DEGRADATIONS))
        if not self.degradations:
            raise ValueError(f'{where}: degradations must not be empty')
        for name in self.degradations:
            parse_degradation(name)
        self.size = opt.get('size', 64)
        self.load_size = opt.get('load_size', round(1.5 * self.size))
        for key, value in (('size', self.size), ('load_size', self.load_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f'{where}: {key} must be a positive integer; got {value!r}')
        if self.load_size < self.size:
            raise ValueError(f'{where}: load_size ({self.load_size}) must be at least size ({self.size})')
        self.seed = int(opt.get('seed', 0))
        self.reader = ImageReader()
        self._cache = {}
        folder = opt.get('clean_folder')
        self.from_folder = bool(folder)
        if folder:
            if 'split' in opt:
                raise ValueError(f'{where}: split selects bundled images; it cannot be combined with clean_folder')
            if not os.path.isdir(folder):
                raise FileNotFoundError(f'{where}: clean_folder {folder} does not exist')
            names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not names:
                raise FileNotFoundError(f'{where}: clean_folder {folder} holds no images '
                                        f'({", ".join(IMAGE_EXTENSIONS)})')
            self.sources = [os.path.join(folder, name) for name in names]
            self.label = f'synthetic-{os.path.basename(os.path.normpath(folder))}'
        else:
            split = opt.get('split', 'train' if self.phase == 'train' else 'val')
            if split not in BUNDLED_SPLITS:
                raise ValueError(f'{where}: split must be one of {", ".join(BUNDLED_SPLITS)}; got {split!r}')
            self.sources = list(BUNDLED_SPLITS[split])
            self.label = 'synthetic-skimage'

    def __len__(self):
        return len(self.sources) * len(self.degradations)

    def clean_image(self, source_index):
        """Clean image ``source_index`` resized so its shorter side is ``load_size`` (cached per process)."""
        if source_index not in self._cache:
            source = self.sources[source_index]
            image = self.reader.read(source) if self.from_folder else bundled_image(source)
            self._cache[source_index] = resize_shorter_side(image, self.load_size)
        return self._cache[source_index]

    def __getitem__(self, index):
        source_index, degradation_index = divmod(index, len(self.degradations))
        degradation = self.degradations[degradation_index]
        rng = item_rng(index, self.seed, self.phase)
        clean = self.clean_image(source_index)
        if self.phase == 'train':
            clean = random_crop([clean], self.size, rng)[0]
        else:
            clean = center_crop(clean, self.size)
        clean = np.ascontiguousarray(clean)
        degraded = degrade(clean, degradation, rng)
        source = self.sources[source_index]
        stem = os.path.splitext(os.path.basename(source))[0]
        gt_path = source if self.from_folder else f'skimage/{source}.png'
        return {
            'lq': img2tensor(degraded, bgr2rgb=False, float32=True),
            'gt': img2tensor(clean, bgr2rgb=False, float32=True),
            'lq_path': f'{os.path.dirname(gt_path)}/{stem}_{degradation}_{index:04d}.png',
            'gt_path': gt_path,
            'degradation': degradation,
            'dataset': self.label,
        }
