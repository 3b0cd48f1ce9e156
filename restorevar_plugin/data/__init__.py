"""Datasets; every ``*_dataset.py`` here is imported and registers into ``DATASET_REGISTRY``."""
from restorevar_plugin.registry_utils import import_modules

dataset_modules = import_modules(__name__, __file__, '_dataset.py')
