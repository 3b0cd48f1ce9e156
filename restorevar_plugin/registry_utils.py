"""Helpers around BasicSR's registries: module discovery, listing and "did you mean" look-ups."""
import difflib
import importlib
from pathlib import Path

from basicsr.utils.registry import (
    ARCH_REGISTRY,
    DATASET_REGISTRY,
    LOSS_REGISTRY,
    METRIC_REGISTRY,
    MODEL_REGISTRY,
)

REGISTRIES = {
    'arch': ARCH_REGISTRY,
    'model': MODEL_REGISTRY,
    'dataset': DATASET_REGISTRY,
    'loss': LOSS_REGISTRY,
    'metric': METRIC_REGISTRY,
}


def import_modules(package_name, package_file, suffix):
    """Import every ``<name><suffix>`` module next to ``package_file`` (BasicSR's file-suffix discovery).

    Args:
        package_name (str): Dotted name of the package, e.g. ``'restorevar_plugin.archs'``.
        package_file (str): ``__file__`` of that package's ``__init__``.
        suffix (str): File-name suffix such as ``'_arch.py'``.

    Returns:
        list[module]: The imported modules, sorted by file name.
    """
    folder = Path(package_file).parent
    names = sorted(p.stem for p in folder.glob(f'*{suffix}'))
    return [importlib.import_module(f'{package_name}.{name}') for name in names]


def registered_names(kind):
    """Sorted names registered in the BasicSR registry ``kind`` (``arch``, ``model``, ...)."""
    return sorted(REGISTRIES[kind].keys())


def owner_module(kind, name):
    """Dotted module path of the object registered under ``name``."""
    return REGISTRIES[kind].get(name).__module__


def close_matches(kind, name, n=5):
    """Registered names of ``kind`` closest to ``name`` (case-insensitive difflib ratio)."""
    names = registered_names(kind)
    lowered = {candidate.lower(): candidate for candidate in names}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[m] for m in matches]


class UnknownRegistryNameError(KeyError):
    """An option names a class that no BasicSR registry holds."""

    def __init__(self, kind, name, where):
        self.kind, self.name, self.where = kind, name, where
        hints = close_matches(kind, name)
        hint = f' Did you mean: {", ".join(hints)}?' if hints else ''
        self.message = (f'{where}: no {kind} named {name!r} is registered.{hint} '
                        f'Run `basicsr list` to see every registered {kind}.')
        super().__init__(self.message)

    def __str__(self):
        return self.message


def require_registered(kind, name, where):
    """Raise :class:`UnknownRegistryNameError` unless ``name`` is registered (exactly, or with ``_basicsr``)."""
    registry = REGISTRIES[kind]
    if name in registry or f'{name}_basicsr' in registry:
        return
    raise UnknownRegistryNameError(kind, name, where)
