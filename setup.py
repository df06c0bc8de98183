"""Packaging for pcdet-seal, an OpenPCDet plugin for Seal-feature masked pre-training."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
about: dict = {}
exec((ROOT / "pcdet_seal" / "version.py").read_text(), about)

setup(
    name="pcdet-seal",
    version=about["__version__"],
    description="OpenPCDet plugin: masked pre-training with Seal features and I2Mask (PICTURE)",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["pcdet_seal", "pcdet_seal.*"]),
    # torch is deliberately unpinned here: users bring the build matching their CUDA.
    # spconv is left out like OpenPCDet does (spconv-cu1xx must match the user's CUDA).
    install_requires=[
        "torch>=2.0",
        "numpy>=1.22",
        "easydict",
        "pyyaml",
        "tqdm",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "scikit-learn>=1.2",
            "scipy",
        ],
    },
)
