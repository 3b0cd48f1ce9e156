"""Losses BasicSR lacks; every ``*_loss.py`` here is imported and registers into ``LOSS_REGISTRY``."""
from restorevar_plugin.registry_utils import import_modules

loss_modules = import_modules(__name__, __file__, '_loss.py')
