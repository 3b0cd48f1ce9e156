"""Models; every ``*_model.py`` here is imported and registers into ``MODEL_REGISTRY``."""
from restorevar_plugin.registry_utils import import_modules

model_modules = import_modules(__name__, __file__, '_model.py')
