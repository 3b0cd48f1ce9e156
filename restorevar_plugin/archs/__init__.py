"""Architectures; every ``*_arch.py`` here is imported and registers into ``ARCH_REGISTRY``."""
from restorevar_plugin.registry_utils import import_modules

arch_modules = import_modules(__name__, __file__, '_arch.py')
