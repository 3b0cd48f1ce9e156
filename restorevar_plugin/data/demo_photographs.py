"""The natural colour photographs the installed dependencies ship: the clean images of the demo data set.

No photograph is downloaded. Each entry of :data:`DEMO_PHOTOGRAPHS` names the distribution that installs
the file, its path inside that distribution's install location (``importlib.metadata``'s ``locate_file``)
and the split the photograph belongs to. The split is a fixed table, so that it is the same on every
machine and a photograph never moves between train and test when another one is missing:

* scikit-image's colour pictures (astronaut, chelsea, coffee, rocket, both views of stereo_motorcycle,
  hubble_deep_field, immunohistochemistry, retina), in ``skimage/data/``;
* the five Kodak reference images pyiqa's wheel installs as ``ResultsCalibra/ref_dir/I{03,04,06,08,19}.bmp``;
* the four photographs of pyiqa's ``tests/test_efficiency_img_dir/``;
* matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``.

The two motorcycle views show one scene, so both are on the train side. A photograph whose distribution is
not installed, or whose file is absent, is reported as missing and skipped.
"""
import importlib.metadata
from pathlib import Path
from typing import NamedTuple

PHOTO_SPLITS = ('train', 'test')


class DemoPhotograph(NamedTuple):
    """One shipped photograph: ``name`` (unique stem), ``package`` (short label used in virtual paths),
    ``distribution`` (installed distribution name), ``relative_path`` (inside it) and ``split``."""
    name: str
    package: str
    distribution: str
    relative_path: str
    split: str

    def locate(self):
        """The file's absolute path, or None when the distribution or the file is not installed."""
        try:
            path = Path(importlib.metadata.distribution(self.distribution).locate_file(self.relative_path))
        except importlib.metadata.PackageNotFoundError:
            return None
        return path if path.is_file() else None


def _skimage(name, file_name, split):
    return DemoPhotograph(name, 'skimage', 'scikit-image', f'skimage/data/{file_name}', split)


def _pyiqa(name, relative_path, split):
    return DemoPhotograph(name, 'pyiqa', 'pyiqa', relative_path, split)


DEMO_PHOTOGRAPHS = (
    _skimage('astronaut', 'astronaut.png', 'train'),
    _skimage('chelsea', 'chelsea.png', 'test'),
    _skimage('coffee', 'coffee.png', 'test'),
    _skimage('rocket', 'rocket.jpg', 'train'),
    _skimage('stereo_motorcycle_left', 'motorcycle_left.png', 'train'),
    _skimage('stereo_motorcycle_right', 'motorcycle_right.png', 'train'),
    _skimage('hubble_deep_field', 'hubble_deep_field.jpg', 'train'),
    _skimage('immunohistochemistry', 'ihc.png', 'train'),
    _skimage('retina', 'retina.jpg', 'train'),
    _pyiqa('I03', 'ResultsCalibra/ref_dir/I03.bmp', 'train'),
    _pyiqa('I04', 'ResultsCalibra/ref_dir/I04.bmp', 'train'),
    _pyiqa('I06', 'ResultsCalibra/ref_dir/I06.bmp', 'train'),
    _pyiqa('I08', 'ResultsCalibra/ref_dir/I08.bmp', 'test'),
    _pyiqa('I19', 'ResultsCalibra/ref_dir/I19.bmp', 'train'),
    _pyiqa('SPAQ_10241', 'tests/test_efficiency_img_dir/SPAQ_10241.jpg', 'train'),
    _pyiqa('frame_4wrwr48cdk6rbcjl', 'tests/test_efficiency_img_dir/frame_4wrwr48cdk6rbcjl.jpg', 'train'),
    _pyiqa('frame_7gzdcz9sif0ekg31', 'tests/test_efficiency_img_dir/frame_7gzdcz9sif0ekg31.jpg', 'train'),
    _pyiqa('frame_9ogwhvvy7gfj6jzh', 'tests/test_efficiency_img_dir/frame_9ogwhvvy7gfj6jzh.jpg', 'test'),
    DemoPhotograph('grace_hopper', 'matplotlib', 'matplotlib', 'matplotlib/mpl-data/sample_data/grace_hopper.jpg',
                   'train'),
)


class LocatedPhotographs(NamedTuple):
    """What :func:`demo_photographs` found: ``present`` ``[(DemoPhotograph, Path)]`` and ``missing``
    ``[DemoPhotograph]``, both in table order."""
    present: list
    missing: list

    def summary(self):
        """One line naming the photographs used and those missing (for the log)."""
        used = ', '.join(f'{photo.package}/{photo.name}' for photo, _ in self.present) or 'none'
        line = f'{len(self.present)} photograph(s) used: {used}'
        if self.missing:
            line += '; missing (skipped): ' + ', '.join(f'{photo.package}/{photo.name} ({photo.distribution} '
                                                        f'{photo.relative_path})' for photo in self.missing)
        return line


def demo_photographs(split=None, table=None):
    """Locate the shipped photographs of ``split`` (all of them for None).

    Args:
        split (str | None): ``'train'``, ``'test'`` or None.
        table (Sequence[DemoPhotograph] | None): Default :data:`DEMO_PHOTOGRAPHS`.

    Returns:
        LocatedPhotographs: The present files and the missing entries.

    Raises:
        ValueError: An unknown ``split``.
    """
    if split is not None and split not in PHOTO_SPLITS:
        raise ValueError(f'photos must be one of {", ".join(PHOTO_SPLITS)}; got {split!r}')
    present, missing = [], []
    for photo in DEMO_PHOTOGRAPHS if table is None else table:
        if split is not None and photo.split != split:
            continue
        path = photo.locate()
        if path is None:
            missing.append(photo)
        else:
            present.append((photo, path))
    return LocatedPhotographs(present, missing)
