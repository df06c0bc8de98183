"""Packaging for pcdet-seal, an OpenPCDet plugin for Seal-feature masked pre-training."""
import os
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
about: dict = {}
exec((ROOT / "pcdet_seal" / "version.py").read_text(), about)

# Start-up hook (docs/architecture.md §4.1): a .pth file at the root of site-packages whose one line imports
# the tiny top-level module pcdet_seal_autoload (it only installs a meta-path watcher).
STARTUP_PTH = "pcdet_seal.pth"
STARTUP_PTH_LINE = "import pcdet_seal_autoload\n"


class BuildPyWithStartupHook(build_py):
    """``build_py`` that also writes the start-up .pth into ``build_lib`` (the wheel's root)."""

    def run(self) -> None:
        super().run()
        target = os.path.join(self.build_lib, STARTUP_PTH)
        self.mkpath(self.build_lib)
        with open(target, "w") as pth:
            pth.write(STARTUP_PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list:
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, STARTUP_PTH)]


cmdclass = {"build_py": BuildPyWithStartupHook}

# What a source checkout of OpenPCDet 0.6.0 needs to import pcdet.models / pcdet.datasets and run
# tools/train.py on the DSVT path; the plugin's CPU mode stands in for its CUDA ops, torch_scatter,
# torchvision and av2 (docs/architecture.md §6; README "CPU mode").
OPENPCDET_RUNTIME = [
    "numba",
    "SharedArray",
    "scikit-image",
    "opencv-python-headless",
    "pyquaternion",
    "tensorboardX",
    "scipy",
]

try:  # PEP 660 editable installs (setuptools >= 64; the hook is tested with >= 70, see pyproject.toml)
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover - very old setuptools: no editable wheels at all
    editable_wheel = None

if editable_wheel is not None:

    class EditableWheelWithStartupHook(editable_wheel):
        """``editable_wheel`` that also puts the start-up .pth at the root of the editable wheel."""

        def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
            result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
            with open(os.path.join(unpacked_wheel, STARTUP_PTH), "w") as pth:
                pth.write(STARTUP_PTH_LINE)
            return result

    cmdclass["editable_wheel"] = EditableWheelWithStartupHook

setup(
    name="pcdet-seal",
    version=about["__version__"],
    description="OpenPCDet plugin: masked pre-training with Seal features and I2Mask (PICTURE)",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["pcdet_seal", "pcdet_seal.*"]),
    py_modules=["pcdet_seal_autoload"],
    cmdclass=cmdclass,
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
            "pytest>=9",  # importorskip skips only on ModuleNotFoundError: a broken import fails
            "scikit-learn>=1.2",
            "scipy",
            "shapely>=2",
            "matplotlib",
        ],
        # scripts/demo.py and scripts/render.py draw their pictures with matplotlib.
        "demo": ["matplotlib"],
        "openpcdet": OPENPCDET_RUNTIME,
        # Everything a CPU machine needs for the demo and the whole test suite, in one extra. spconv-cu120
        # runs on CPU tensors (ConvAlgo.Native) but has no wheels for Python >= 3.12, hence the marker.
        # It is a separate distribution from spconv-cu121/124/126, and all of them install the same
        # `spconv` package: never add this extra where a spconv-cu12x build is installed (README).
        "cpu": [*OPENPCDET_RUNTIME, "matplotlib", 'spconv-cu120; python_version < "3.12"'],
    },
    # The command-line tools (docs/architecture.md §7); scripts/*.py run the same functions from a checkout.
    entry_points={
        "console_scripts": [
            "pcdet-seal-link-openpcdet = pcdet_seal.link_openpcdet:main",
            "pcdet-seal-demo = pcdet_seal.tools.cli.demo:main",
            "pcdet-seal-features = pcdet_seal.tools.cli.seal_features:main",
            "pcdet-seal-check-cache = pcdet_seal.tools.cli.check_seal_cache:main",
            "pcdet-seal-check-transfer = pcdet_seal.tools.cli.check_transfer:console_main",
            "pcdet-seal-convert-checkpoint = pcdet_seal.tools.cli.convert_seal_checkpoint:main",
            "pcdet-seal-render = pcdet_seal.tools.cli.render:main",
            "pcdet-seal-waymo-submission = pcdet_seal.tools.cli.waymo_submission:main",
        ],
    },
)
