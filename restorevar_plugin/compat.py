"""The one place for compatibility shims between basicsr 1.4.2, torchvision and torch.

basicsr 1.4.2 (the last PyPI release) imports ``torchvision.transforms.functional_tensor``, a module
removed in torchvision 0.17. :func:`apply` registers a stand-in module under that name which
provides the one function basicsr uses (``rgb_to_grayscale``). It must run before the first
``import basicsr``; ``restorevar_plugin/__init__.py`` calls it first thing. Nothing else in torch or
torchvision is touched.
"""
import importlib
import sys
import types

FUNCTIONAL_TENSOR = 'torchvision.transforms.functional_tensor'


def _install_functional_tensor_alias():
    """Register ``torchvision.transforms.functional_tensor`` when torchvision no longer has it."""
    if FUNCTIONAL_TENSOR in sys.modules:
        return
    try:
        importlib.import_module(FUNCTIONAL_TENSOR)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    alias = types.ModuleType(FUNCTIONAL_TENSOR)
    alias.__doc__ = 'restorevar_plugin.compat stand-in for the module removed in torchvision 0.17.'
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[FUNCTIONAL_TENSOR] = alias


def apply():
    """Apply every shim; idempotent. Call before importing basicsr."""
    _install_functional_tensor_alias()
