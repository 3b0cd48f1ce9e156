"""Packaging for restorevar_plugin.

Install torch first, then this package without build isolation, so that basicsr's
``setup_requires=['cython', 'numpy', 'torch']`` is satisfied by the environment instead of a
second multi-GB torch in a temporary build environment (see README, "Install").

The dataset metas live once in git, in the top-level ``datasets_meta/`` folder; ``package_dir`` maps
that folder to the data-only package ``restorevar_plugin.datasets_meta``, so a wheel or a
``pip install .`` carries them inside the package (a symlink would not survive a wheel, a second copy
would drift).
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = (HERE / 'restorevar_plugin' / 'VERSION').read_text().strip()
# Data-only package: the dataset metas, found at run time with importlib.resources (data/meta/lookup.py).
PACKAGED_METAS = 'restorevar_plugin.datasets_meta'

setup(
    name='restorevar_plugin',
    version=VERSION,
    description='RestoreVAR (visual autoregressive all-in-one restoration) and baselines as a BasicSR plugin',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['restorevar_plugin', 'restorevar_plugin.*']) + [PACKAGED_METAS],
    # The top-level datasets_meta/ is the one copy in git; wheels ship it as restorevar_plugin/datasets_meta/.
    package_dir={PACKAGED_METAS: 'datasets_meta'},
    package_data={'restorevar_plugin': ['VERSION', 'demo/*.yml', 'demo/options/*.yml', 'demo/options/*/*.yml',
                                        'demo/checkpoints/*.pth', 'demo/checkpoints/manifest.json'],
                  PACKAGED_METAS: ['*.yml', '*.yaml', 'README.md']},
    include_package_data=True,
    python_requires='>=3.9,<3.13',
    install_requires=[
        'basicsr==1.4.2',
        'torch>=2.3,<=2.14.1',
        'torchvision>=0.18,<=0.29.1',
        'numpy>=1.23',
        'einops>=0.7',
        'lpips>=0.1.4',
        'pyiqa>=0.1.13,<0.2',
        'openai-clip>=1.0',
        'pyyaml>=6.0',
        'opencv-python>=4.8',
        'Pillow>=9.1',
        'scikit-image>=0.21',
        'tqdm>=4.60',
        'tensorboard>=2.10',
        'safetensors>=0.4',
        'setuptools>=77,<81',
    ],
    extras_require={
        # `basicsr benchmark`'s latent-diffusion cost reference builds the SD-1.5 UNet (no weights) with diffusers.
        'benchmark': ['diffusers>=0.27', 'pillow>=9.2'],
        # The report test drives the system Chromium (Debian chromium + chromium-driver) through selenium.
        'test': ['pytest>=7.4', 'pytest-timeout>=2.2', 'diffusers>=0.27', 'pillow>=9.2', 'selenium>=4.10', 'ruff>=0.5'],
    },
    entry_points={
        'console_scripts': ['basicsr = restorevar_plugin.cli:main'],
        'basicsr.plugins': ['restorevar_plugin = restorevar_plugin'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
)
