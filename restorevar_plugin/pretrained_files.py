"""Third-party weight files the perceptual losses and metrics read, and how to say one is missing.

LPIPS, MUSIQ and CLIPIQA each read a file their library would otherwise download at construction
time. We never let them: :func:`resolve_pretrained_file` finds the file on disk (an explicit path,
or the library's own cache location under ``torch.hub.get_dir()``, i.e. ``$TORCH_HOME/hub``) and
raises a :class:`FileNotFoundError` naming the file, the location looked at and the URL to fetch it
from. The location is computed at call time, so changing ``TORCH_HOME`` takes effect immediately.

The metadata lives here as data; ``tests/test_metrics.py`` checks every URL against the one the
owning library (torchvision, pyiqa) would download.
"""
from dataclasses import dataclass
from pathlib import Path

import torch

from restorevar_plugin.weights import resolve_checkpoint


@dataclass(frozen=True)
class PretrainedFile:
    """One downloadable weight file: where its library caches it and where it comes from.

    Attributes:
        filename (str): File name in the cache folder.
        hub_subdir (str): Folder under ``torch.hub.get_dir()`` the owning library reads from.
        url (str): Download URL (the owning library's own).
        description (str): What the file holds and who reads it.
        option (str): The keyword argument that points our code at a local copy instead.
    """

    filename: str
    hub_subdir: str
    url: str
    description: str
    option: str

    def default_path(self):
        """Where the owning library looks for the file: ``$TORCH_HOME/hub/<hub_subdir>/<filename>``."""
        return Path(torch.hub.get_dir()) / self.hub_subdir / self.filename


PRETRAINED_FILES = {
    'lpips_alex': PretrainedFile(
        filename='alexnet-owt-7be5be79.pth',
        hub_subdir='checkpoints',
        url='https://download.pytorch.org/models/alexnet-owt-7be5be79.pth',
        description='torchvision ImageNet AlexNet, the LPIPS (net=alex) backbone',
        option='backbone_weights_path'),
    'lpips_vgg': PretrainedFile(
        filename='vgg16-397923af.pth',
        hub_subdir='checkpoints',
        url='https://download.pytorch.org/models/vgg16-397923af.pth',
        description='torchvision ImageNet VGG16, the LPIPS (net=vgg) backbone',
        option='backbone_weights_path'),
    'musiq': PretrainedFile(
        filename='musiq_koniq_ckpt-e95806b9.pth',
        hub_subdir='pyiqa',
        url='https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/musiq_koniq_ckpt-e95806b9.pth',
        description="MUSIQ trained on KonIQ-10k, pyiqa's default 'musiq'",
        option='pretrained_model_path'),
    'clipiqa': PretrainedFile(
        filename='RN50.pt',
        hub_subdir='clip',
        url=('https://openaipublic.azureedge.net/clip/models/'
             'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt'),
        description="OpenAI CLIP RN50, the backbone of pyiqa's default 'clipiqa'",
        option='clip_model_path'),
}


def resolve_pretrained_file(key, path=None):
    """Return the existing weight file for ``key``: ``path`` when given, else the library's cache location.

    Args:
        key (str): A key of :data:`PRETRAINED_FILES` (``'lpips_alex'``, ``'lpips_vgg'``, ``'musiq'``, ``'clipiqa'``).
        path (str | Path | None): An explicit local file; ``None`` looks in ``$TORCH_HOME/hub/...``.

    Returns:
        Path: The file; nothing is downloaded.

    Raises:
        KeyError: ``key`` is unknown.
        FileNotFoundError: naming the file, the location looked at, the download URL and the option that
            points at a local copy.
    """
    if key not in PRETRAINED_FILES:
        raise KeyError(f'unknown pretrained file {key!r}; known: {sorted(PRETRAINED_FILES)}')
    info = PRETRAINED_FILES[key]
    try:
        return resolve_checkpoint(info.default_path() if path is None else path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f'{error} It is the {info.description} ({info.filename}), which cannot be downloaded automatically '
            f'here: fetch {info.url} and place it at {info.default_path()} (a folder that follows $TORCH_HOME), '
            f'or pass {info.option}=<local file>.') from None
