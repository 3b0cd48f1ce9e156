"""restorevar_plugin: RestoreVAR and all-in-one restoration baselines as a BasicSR plugin.

Importing the package applies the compatibility shims (:mod:`restorevar_plugin.compat`) and then
imports every ``*_arch.py``, ``*_model.py``, ``*_dataset.py``, ``*_loss.py`` and metric module, so
that their classes are registered in BasicSR's registries. Nothing else happens at import time.
"""
from pathlib import Path

from . import compat

compat.apply()

from . import archs, data, losses, metrics, models  # noqa: E402,F401  (registration side effect)

__version__ = (Path(__file__).parent / 'VERSION').read_text().strip()
