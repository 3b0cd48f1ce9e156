"""Metrics; every ``*_metric.py`` here is imported and registers into ``METRIC_REGISTRY``.

BasicSR imports its own metrics by name; we scan our folder the same way as archs and models.
"""
from restorevar_plugin.registry_utils import import_modules

metric_modules = import_modules(__name__, __file__, '_metric.py')
