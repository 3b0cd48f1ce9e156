"""Pytest fixtures for code that reads third-party weights: a temporary TORCH_HOME, random-init files planted in
the libraries' own layouts (LPIPS's AlexNet backbone, pyiqa's MUSIQ), and a guard that fails any network
connection.

Test modules load them with ``pytest_plugins = ['helpers.pretrained']``.
"""
import socket
from pathlib import Path

import pytest
import torch
import torchvision

from restorevar_plugin.checkpoints import CHECKPOINTS


def use_torch_home(monkeypatch, root):
    """Point ``TORCH_HOME`` (and ``torch.hub``'s folder) at ``root``; return ``torch.hub.get_dir()``."""
    monkeypatch.setenv('TORCH_HOME', str(root))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    return Path(torch.hub.get_dir())


@pytest.fixture
def no_network(monkeypatch):
    """Make every socket connection fail, so a download attempt cannot go unnoticed."""
    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args!r}')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)


@pytest.fixture
def empty_torch_home(monkeypatch, tmp_path):
    """An empty TORCH_HOME (``tmp_path / 'torch_home'``); returns its hub folder."""
    return use_torch_home(monkeypatch, tmp_path / 'torch_home')


@pytest.fixture(scope='session')
def alexnet_torch_home(tmp_path_factory):
    """A TORCH_HOME folder holding a random-init torchvision AlexNet state dict under LPIPS's backbone file name."""
    root = tmp_path_factory.mktemp('torch_home')
    target = root / 'hub' / CHECKPOINTS['lpips_alex'].hub_subdir / CHECKPOINTS['lpips_alex'].filename
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), target)
    return root


@pytest.fixture
def lpips_home(alexnet_torch_home, monkeypatch, no_network):
    """``alexnet_torch_home`` as the active TORCH_HOME, with the network forbidden; returns the hub folder."""
    return use_torch_home(monkeypatch, alexnet_torch_home)


@pytest.fixture(scope='session')
def random_musiq_file(tmp_path_factory):
    """A random-init pyiqa MUSIQ state dict saved as the file ``pretrained_model_path`` points at.

    Its scores mean nothing; it lets the real pyiqa code path run offline.
    """
    from pyiqa.archs.musiq_arch import MUSIQ

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('musiq') / CHECKPOINTS['musiq'].filename
    torch.save(MUSIQ(pretrained=False).state_dict(), path)
    return path
