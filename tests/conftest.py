"""Shared pytest fixtures (helpers shared by test modules are in ``tests/helpers/``)."""
import logging

import pytest

import restorevar_plugin  # noqa: F401  (shims before basicsr, registrations)
from helpers.runs import write_paired_folders


@pytest.fixture
def toy_root(tmp_path):
    """A run root holding ``data/gt`` and ``data/lq`` with six 48-px image pairs."""
    root = tmp_path / 'root'
    write_paired_folders(root / 'data')
    return root


@pytest.fixture
def basicsr_log():
    """Records logged by BasicSR's root logger (it does not propagate to pytest's caplog)."""
    logger = logging.getLogger('basicsr')
    records = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)
