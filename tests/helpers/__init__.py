"""Helpers shared by the test modules (no test module imports another one):

* :mod:`helpers.runs`: image folders, option files, running the CLI and torchrun;
* :mod:`helpers.restorevar`: tiny RestoreVARModel option files and their synthetic batches;
* :mod:`helpers.references`: independent reference computations (RoPE tables, masks, base-VAR states);
* :mod:`helpers.official_baselines`: functional transcriptions of the official PromptIR and AWRaCLe forwards;
* :mod:`helpers.dataset_trees`: a tiny on-disk example tree for every shipped dataset meta;
* :mod:`helpers.tiny_restorevar`: seeded tiny RestoreVAR transformer, VQVAE and refiner configurations;
* :mod:`helpers.pretrained`: fixtures for third-party weights (``pytest_plugins = ['helpers.pretrained']``).

Shared fixtures live in ``tests/conftest.py``.
"""
import restorevar_plugin  # noqa: F401  (its compatibility shims must precede every import of basicsr)
