"""Finding dataset metas by name: the search path and the packaged ``datasets_meta/`` folder.

Search path for meta names (first match wins): the ``meta_dirs`` argument (dataset option
``meta_dirs``), then the folders in the environment variable ``RESTOREVAR_META_PATH``
(``os.pathsep``-separated), then the metas shipped with the package (:func:`default_meta_dir`). A value
ending in ``.yml``/``.yaml`` or containing a path separator is read as a file path.
"""
import difflib
import os
from importlib import resources
from pathlib import Path

import yaml

from restorevar_plugin.data.meta.schema import MetaSchemaError, parse_dataset_meta

META_PATH_ENV = 'RESTOREVAR_META_PATH'
# The repository's top-level folder: the one copy in git, which setup.py ships as package data.
SOURCE_META_DIR = Path(__file__).resolve().parents[3] / 'datasets_meta'
PACKAGED_META_DIR = 'datasets_meta'


def default_meta_dir():
    """The folder of the metas shipped with the package.

    An installed package (wheel or ``pip install .``) holds them as package data,
    ``restorevar_plugin/datasets_meta/`` (found with :mod:`importlib.resources`); a source checkout or an
    editable install reads the repository's top-level ``datasets_meta/`` they are built from.
    """
    packaged = resources.files('restorevar_plugin') / PACKAGED_META_DIR
    if packaged.is_dir():
        return Path(str(packaged))
    return SOURCE_META_DIR


def meta_search_path(meta_dirs=None):
    """Folders searched for meta names, in order: ``meta_dirs``, ``$RESTOREVAR_META_PATH``, the packaged metas."""
    dirs = [Path(d) for d in (meta_dirs or [])]
    dirs += [Path(d) for d in os.environ.get(META_PATH_ENV, '').split(os.pathsep) if d]
    dirs.append(default_meta_dir())
    return dirs


def available_metas(meta_dirs=None):
    """``{name: path}`` of every ``*.yml`` on the search path (the first folder holding a name wins)."""
    found = {}
    for folder in meta_search_path(meta_dirs):
        if folder.is_dir():
            for path in sorted(folder.glob('*.y*ml')):
                found.setdefault(path.stem, path)
    return found


def read_meta_file(path):
    """Read and validate one meta YAML file."""
    path = Path(path)
    if not path.is_file():
        raise MetaSchemaError(f'{path}: dataset meta file does not exist')
    try:
        mapping = yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise MetaSchemaError(f'{path}: not valid YAML ({error})') from error
    return parse_dataset_meta(mapping, str(path))


def load_dataset_meta(name_or_path, meta_dirs=None):
    """Load a dataset meta by name (searched on :func:`meta_search_path`) or by file path.

    Args:
        name_or_path (str | Path): e.g. ``'reside_sots_outdoor_test'`` or ``'my_metas/x.yml'``.
        meta_dirs (list[str] | None): Extra folders searched first.

    Returns:
        DatasetMeta

    Raises:
        MetaSchemaError: Unknown name (with close matches and the folders searched) or invalid file.
    """
    text = str(name_or_path)
    if text.endswith(('.yml', '.yaml')) or os.sep in text or '/' in text:
        return read_meta_file(text)
    metas = available_metas(meta_dirs)
    if text not in metas:
        hints = difflib.get_close_matches(text, list(metas), n=5, cutoff=0.5)
        hint = f' Did you mean: {", ".join(hints)}?' if hints else ''
        searched = ', '.join(str(d) for d in meta_search_path(meta_dirs))
        raise MetaSchemaError(f'no dataset meta named {text!r}.{hint} Searched: {searched} '
                              f'(add folders with the dataset option meta_dirs or ${META_PATH_ENV}).')
    return read_meta_file(metas[text])


def resolve_metas(entries, meta_dirs=None, where='meta'):
    """Turn a ``meta`` option (a name, path, inline mapping, or a list of them) into DatasetMeta objects."""
    if isinstance(entries, (str, dict)):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise MetaSchemaError(f'{where}: expected a meta name, a file path, an inline mapping or a non-empty '
                              f'list of them; got {entries!r}')
    metas = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            metas.append(parse_dataset_meta(entry, f'{where}[{index}] (inline)'))
        elif isinstance(entry, str):
            metas.append(load_dataset_meta(entry, meta_dirs))
        else:
            raise MetaSchemaError(f'{where}[{index}]: expected a meta name, path or mapping, got {entry!r}')
    return metas
