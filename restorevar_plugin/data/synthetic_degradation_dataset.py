"""``SyntheticDegradationDataset``: clean images degraded on the fly (the demo's and the tests' data).

The clean images are photographs the installed dependencies ship (no download, see
:mod:`restorevar_plugin.data.demo_photographs`), split by photograph, or the images of a folder::

    datasets:
      train:
        name: synthetic_train
        type: SyntheticDegradationDataset
        photos: train           # the demo set: every shipped photograph of the split (train or test)
        split: train            # or scikit-image's pictures only: train (7) or val (2; = their test photos)
        clean_folder: ~         # or a folder of clean images (no split)
        degradations: [haze, rain, snow, low_light, blur]   # mixes such as haze+rain allowed
        size: 64                # side of the square crops returned
        load_size: 96           # shorter side the clean image is resized to first (default 1.5 * size)
        use_hflip: false        # train: random horizontal flip of the clean crop (BasicSR's name)
        use_rot: false          # train: random vertical flip and transpose too (all 8 dihedral modes)
        seed: 0

``photos``, ``split`` and ``clean_folder`` exclude each other; without any, ``split`` defaults to train in the
train phase, else val. ``degradations`` defaults to :data:`DEFAULT_DEGRADATIONS`, with ``photos`` to
:data:`DEMO_DEGRADATIONS` (the five and one mix). Shipped photographs that are not installed are skipped;
which were used (and which are missing) is logged.

Item ``i`` uses clean image ``i // len(degradations)`` and degradation ``i % len(degradations)``.
Train items take a random crop (flipped / rotated with ``use_hflip`` / ``use_rot``, before it is degraded,
so rain still falls and haze still thickens the way the degradation draws them) and random degradation
parameters (seeded, see :mod:`restorevar_plugin.data.item_randomness`); val/test items take the centre crop and the same
degradation every epoch. Items are the dict of ``MultiDegradationPairedDataset``: ``lq``, ``gt``
(``(3, size, size)`` float32 RGB in [0, 1]), ``lq_path``, ``gt_path``, ``degradation``, ``dataset``;
``lq_path`` is a virtual, unique ``<image>_<degradation>_<index>.png`` name (BasicSR names saved
images after it).
"""
import os

import numpy as np
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from restorevar_plugin.data.degradations import degrade, parse_degradation
from restorevar_plugin.data.demo_photographs import DEMO_PHOTOGRAPHS, demo_photographs
from restorevar_plugin.data.image_io import ImageReader
from restorevar_plugin.data.item_randomness import item_rng
from restorevar_plugin.data.meta import IMAGE_EXTENSIONS
from restorevar_plugin.data.option_checks import dataset_label, reject_unknown_options
from restorevar_plugin.data.transforms import (
    center_crop,
    flip_rotate,
    random_crop,
    resize_shorter_side,
)

BUNDLED_SPLITS = {split: tuple(photo.name for photo in DEMO_PHOTOGRAPHS
                                if photo.package == 'skimage' and photo.split == photo_split)
                  for split, photo_split in (('train', 'train'), ('val', 'test'))}
DEFAULT_DEGRADATIONS = ('haze', 'rain', 'snow', 'low_light', 'blur')
DEMO_DEGRADATIONS = DEFAULT_DEGRADATIONS + ('haze+rain', )
# Modes of transforms.flip_rotate allowed by (use_hflip, use_rot): BasicSR's augment, a left-right flip
# (5: rotate 180, flip up-down) and/or an up-down flip (1) and a transpose (3; both: 6).
FLIP_MODES = {(False, False): (0, ), (True, False): (0, 5), (False, True): (0, 1, 3, 6),
              (True, True): tuple(range(8))}
OPTION_KEYS = ('degradations', 'photos', 'split', 'clean_folder', 'size', 'load_size', 'use_hflip', 'use_rot',
               'seed')


@DATASET_REGISTRY.register()
class SyntheticDegradationDataset(data.Dataset):
    """Clean images (bundled or from a folder) degraded on the fly; see the module docstring for options.

    Args:
        opt (dict): Dataset options.
    """

    option_keys = OPTION_KEYS  # for restorevar_plugin.option_schema

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        where = dataset_label(opt, 'SyntheticDegradationDataset')
        reject_unknown_options(opt, OPTION_KEYS, where)
        self.phase = opt.get('phase', 'train')
        sources = [key for key in ('photos', 'split', 'clean_folder') if opt.get(key) is not None]
        if len(sources) > 1:
            raise ValueError(f'{where}: {" and ".join(sources)} each select the clean images; give only one')
        default_degradations = DEMO_DEGRADATIONS if opt.get('photos') is not None else DEFAULT_DEGRADATIONS
        self.degradations = list(opt.get('degradations', default_degradations))
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
        self.use_hflip, self.use_rot = opt.get('use_hflip', False), opt.get('use_rot', False)
        for key, value in (('use_hflip', self.use_hflip), ('use_rot', self.use_rot)):
            if not isinstance(value, bool):
                raise ValueError(f'{where}: {key} must be true or false; got {value!r}')
        self.seed = int(opt.get('seed', 0))
        self.reader = ImageReader()
        self._cache = {}
        if opt.get('clean_folder') is not None:
            self.sources, self.label = self._folder_sources(opt['clean_folder'], where)
        else:
            self.sources, self.label = self._shipped_sources(opt, where)

    @staticmethod
    def _folder_sources(folder, where):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f'{where}: clean_folder {folder} does not exist')
        names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise FileNotFoundError(f'{where}: clean_folder {folder} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
        paths = [os.path.join(folder, name) for name in names]
        return [(path, path) for path in paths], f'synthetic-{os.path.basename(os.path.normpath(folder))}'

    def _shipped_sources(self, opt, where):
        """``[(gt_path, file)]`` of the shipped photographs selected by ``photos`` or ``split``, and the label."""
        if opt.get('photos') is not None:
            try:
                located = demo_photographs(opt['photos'])
            except ValueError as error:
                raise ValueError(f'{where}: {error}') from None
            label, selection = 'synthetic-photos', f'photos: {opt["photos"]}'
        else:
            split = opt.get('split', 'train' if self.phase == 'train' else 'val')
            if split not in BUNDLED_SPLITS:
                raise ValueError(f'{where}: split must be one of {", ".join(BUNDLED_SPLITS)}; got {split!r}')
            located = demo_photographs(table=[photo for photo in DEMO_PHOTOGRAPHS if photo.package == 'skimage'
                                              and photo.name in BUNDLED_SPLITS[split]])
            label, selection = 'synthetic-skimage', f'split: {split}'
        if not located.present:
            raise FileNotFoundError(f'{where}: none of the shipped photographs of {selection} is installed '
                                    f'({located.summary()}); use clean_folder instead')
        get_root_logger().info(f'{where}, {selection}: {located.summary()}')
        return [(f'{photo.package}/{photo.name}.png', str(path)) for photo, path in located.present], label

    def __len__(self):
        return len(self.sources) * len(self.degradations)

    def clean_image(self, source_index):
        """Clean image ``source_index`` resized so its shorter side is ``load_size`` (cached per process)."""
        if source_index not in self._cache:
            image = self.reader.read(self.sources[source_index][1])
            self._cache[source_index] = resize_shorter_side(image, self.load_size)
        return self._cache[source_index]

    def __getitem__(self, index):
        source_index, degradation_index = divmod(index, len(self.degradations))
        degradation = self.degradations[degradation_index]
        rng = item_rng(index, self.seed, self.phase)
        clean = self.clean_image(source_index)
        if self.phase == 'train':
            clean = self.augment(random_crop([clean], self.size, rng)[0], rng)
        else:
            clean = center_crop(clean, self.size)
        clean = np.ascontiguousarray(clean)
        degraded = degrade(clean, degradation, rng)
        return dict(self.item_labels(index), lq=img2tensor(degraded, bgr2rgb=False, float32=True),
                    gt=img2tensor(clean, bgr2rgb=False, float32=True))

    def augment(self, crop, rng):
        """``crop`` in a random one of the dihedral modes the options allow (:data:`FLIP_MODES`).

        Draws nothing from ``rng`` when both options are off, so the items stay those of earlier versions.

        Args:
            crop (np.ndarray): ``(size, size, 3)`` float32 RGB in [0, 1].
            rng (numpy.random.Generator): The item's randomness.

        Returns:
            np.ndarray: The crop in one of 2 (``use_hflip``), 4 (``use_rot``) or 8 (both) modes, equally likely.
        """
        modes = FLIP_MODES[self.use_hflip, self.use_rot]
        return crop if len(modes) == 1 else flip_rotate(crop, modes[int(rng.integers(len(modes)))])

    def item_labels(self, index):
        """Item ``index``'s ``lq_path``, ``gt_path``, ``degradation`` and ``dataset`` without making its images."""
        source_index, degradation_index = divmod(index, len(self.degradations))
        degradation = self.degradations[degradation_index]
        gt_path = self.sources[source_index][0]
        stem = os.path.splitext(os.path.basename(gt_path))[0]
        return {'lq_path': f'{os.path.dirname(gt_path)}/{stem}_{degradation}_{index:04d}.png', 'gt_path': gt_path,
                'degradation': degradation, 'dataset': self.label}
