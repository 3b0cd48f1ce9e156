"""Every checkpoint file the plugin reads, as one table of data (timm's ``PretrainedCfg`` habit).

Each :class:`CheckpointFile` says what the file holds, where it comes from, its licence, its layout
(see :mod:`restorevar_plugin.checkpoints.loading`) and the arch it fills. Third-party files that a
library would otherwise download at construction time (LPIPS backbones, MUSIQ, CLIP) also say where
that library caches them (``hub_subdir`` under ``torch.hub.get_dir()``) and which keyword argument
points our code at a local copy instead; ``tests/test_metrics.py`` checks their URLs against the
owning libraries' own.

Sizes and checksums are given where the publisher states them: torchvision and pyiqa put the first
8 hex digits of the file's SHA-256 in the file name, OpenAI's CLIP puts the whole SHA-256 in the URL.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

RESTOREVAR_ARCHIVE = 'RestoreVAR checkpoint archive (JHU SharePoint link, github.com/sudraj2002/RestoreVAR README)'
NO_LICENCE = 'no licence stated in the repository'


@dataclass(frozen=True)
class CheckpointFile:
    """Facts about one public weight file.

    Attributes:
        filename (str): The published file name.
        description (str): What the file holds.
        source (str): Who publishes it and where.
        url (str): Download URL, or the page that links to it when there is no direct URL.
        licence (str): The licence of the release, as its repository states it.
        layout (str): The layout :func:`~restorevar_plugin.checkpoints.loading.load_state_dict` reports:
            ``flat``, ``basicsr``, ``lightning``, ``var_trainer``, ``torchscript``, or ``library`` (read by its
            own library).
        arch (str): The registered arch (or library network) the file fills.
        size_bytes (int | None): File size when the publisher states it.
        sha256 (str | None): SHA-256 (or the published prefix of it) when the publisher states it.
        hub_subdir (str | None): Folder under ``torch.hub.get_dir()`` where the owning library caches it.
        option (str | None): The keyword argument that points our code at a local copy.
    """

    filename: str
    description: str
    source: str
    url: str
    licence: str
    layout: str
    arch: str
    size_bytes: Optional[int] = None
    sha256: Optional[str] = None
    hub_subdir: Optional[str] = None
    option: Optional[str] = None

    def default_path(self):
        """Where the owning library looks for the file: ``$TORCH_HOME/hub/<hub_subdir>/<filename>``."""
        if self.hub_subdir is None:
            raise ValueError(f'{self.filename} has no library cache location; pass its path explicitly')
        return Path(torch.hub.get_dir()) / self.hub_subdir / self.filename

    def where_to_get(self):
        """One sentence naming what the published file is and where to download it."""
        return f'The published {self.filename} is the {self.description}; get it from {self.source} ({self.url}).'


CHECKPOINTS = {
    'vae_ch160v4096z32': CheckpointFile(
        filename='vae_ch160v4096z32.pth',
        description='VAR multi-scale VQVAE (ch 160, vocab 4096, z 32), 108,948,355 parameters',
        source='Hugging Face repo FoundationVision/var (main branch)',
        url='https://huggingface.co/FoundationVision/var/resolve/main/vae_ch160v4096z32.pth',
        licence='MIT (github.com/FoundationVision/VAR LICENSE)',
        layout='flat',
        arch='MultiScaleVQVAE'),
    'var_d16': CheckpointFile(
        filename='var_d16.pth',
        description='base VAR-d16 transformer (256 px, with AdaLN); stage-1 initialisation',
        source='Hugging Face repo FoundationVision/var (main branch)',
        url='https://huggingface.co/FoundationVision/var/resolve/main/var_d16.pth',
        licence='MIT (github.com/FoundationVision/VAR LICENSE)',
        layout='flat',
        arch='RestoreVARTransformer'),
    'vae_restorevar': CheckpointFile(
        filename='vae_restorevar.ckpt',
        description='RestoreVAR VQVAE with the decoder fine-tuned on continuous latents (a flat dict, not Lightning)',
        source=RESTOREVAR_ARCHIVE,
        url='https://github.com/sudraj2002/RestoreVAR#checkpoints',
        licence=NO_LICENCE,
        layout='flat',
        arch='MultiScaleVQVAE'),
    'restorevar': CheckpointFile(
        filename='restorevar.pth',
        description='RestoreVAR transformer + latent refiner (594 keys, flat)',
        source=RESTOREVAR_ARCHIVE,
        url='https://github.com/sudraj2002/RestoreVAR#checkpoints',
        licence=NO_LICENCE,
        layout='flat',
        arch='RestoreVARTransformer+LatentRefinerTransformer'),
    'promptir': CheckpointFile(
        filename='model.ckpt',
        description='PromptIR trained on its 3 tasks (denoise, derain, dehaze), Lightning checkpoint',
        source='GitHub release v1.0 of va1shn9v/PromptIR (also a Google Drive link in its README)',
        url='https://github.com/va1shn9v/PromptIR/releases/tag/v1.0',
        licence=NO_LICENCE,
        layout='lightning',
        arch='PromptIR'),
    'awracle': CheckpointFile(
        filename='best.ckpt',
        description='AWRaCLe (with its frozen CLIP ViT-B/32 weights, net.clip.*), Lightning checkpoint',
        source='AWRaCLe checkpoint (JHU SharePoint link in github.com/sudraj2002/AWRaCLe README)',
        url='https://github.com/sudraj2002/AWRaCLe#checkpoints',
        licence=NO_LICENCE,
        layout='lightning',
        arch='AWRaCLe'),
    'clip_vit_b32': CheckpointFile(
        filename='ViT-B-32.pt',
        description="OpenAI CLIP ViT-B/32 (TorchScript), AWRaCLe's frozen context encoder",
        source="OpenAI CLIP (github.com/openai/CLIP, clip.load('ViT-B/32') downloads it)",
        url=('https://openaipublic.azureedge.net/clip/models/'
             '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt'),
        licence='MIT (github.com/openai/CLIP LICENSE)',
        layout='torchscript',
        arch='AWRaCLe.clip',
        sha256='40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af'),
    'lpips_alex': CheckpointFile(
        filename='alexnet-owt-7be5be79.pth',
        description='torchvision ImageNet AlexNet, the LPIPS (net=alex) backbone',
        source='torchvision (AlexNet_Weights.IMAGENET1K_V1)',
        url='https://download.pytorch.org/models/alexnet-owt-7be5be79.pth',
        licence='BSD-3-Clause (torchvision)',
        layout='library',
        arch='torchvision.models.alexnet',
        sha256='7be5be79',
        hub_subdir='checkpoints',
        option='backbone_weights_path'),
    'lpips_vgg': CheckpointFile(
        filename='vgg16-397923af.pth',
        description='torchvision ImageNet VGG16, the LPIPS (net=vgg) backbone',
        source='torchvision (VGG16_Weights.IMAGENET1K_V1)',
        url='https://download.pytorch.org/models/vgg16-397923af.pth',
        licence='BSD-3-Clause (torchvision)',
        layout='library',
        arch='torchvision.models.vgg16',
        sha256='397923af',
        hub_subdir='checkpoints',
        option='backbone_weights_path'),
    'musiq': CheckpointFile(
        filename='musiq_koniq_ckpt-e95806b9.pth',
        description="MUSIQ trained on KonIQ-10k, pyiqa's default 'musiq'",
        source='Hugging Face repo chaofengc/IQA-PyTorch-Weights (pyiqa)',
        url='https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/musiq_koniq_ckpt-e95806b9.pth',
        licence='see github.com/chaofengc/IQA-PyTorch',
        layout='library',
        arch='pyiqa MUSIQ',
        sha256='e95806b9',
        hub_subdir='pyiqa',
        option='pretrained_model_path'),
    'clipiqa': CheckpointFile(
        filename='RN50.pt',
        description="OpenAI CLIP RN50, the backbone of pyiqa's default 'clipiqa'",
        source='OpenAI CLIP (clip._MODELS["RN50"])',
        url=('https://openaipublic.azureedge.net/clip/models/'
             'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt'),
        licence='MIT (github.com/openai/CLIP LICENSE)',
        layout='library',
        arch='CLIP RN50',
        sha256='afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762',
        hub_subdir='clip',
        option='clip_model_path'),
}


def checkpoint_for_filename(name):
    """The :class:`CheckpointFile` published under file name ``name``, or None.

    A file name shared by several releases (none today) returns the first row.
    """
    return next((info for info in CHECKPOINTS.values() if info.filename == name), None)
