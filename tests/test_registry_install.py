"""The start-up .pth hook ships with both ``pip install .`` and ``pip install -e .`` (fresh venvs, no deps)."""
from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.py", "pyproject.toml", "README.md", "pcdet_seal_autoload.py", "pcdet_seal")
PROBE = ("import sys, sysconfig, pathlib; "
         "print(any(type(f).__name__ == 'PcdetImportWatcher' for f in sys.meta_path), "
         "(pathlib.Path(sysconfig.get_paths()['purelib']) / 'pcdet_seal.pth').is_file(), "
         "'pcdet_seal' in sys.modules)")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the project (the install must not write build files into the work tree)."""
    copy = tmp_path_factory.mktemp("src") / "pcdet-seal"
    copy.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, copy / name)
    return copy


@pytest.fixture(scope="module")
def fake_pcdet(tmp_path_factory) -> Path:
    """A ``pcdet`` package like an unbuilt checkout: its ``__init__`` needs the missing ``pcdet.version``."""
    path = tmp_path_factory.mktemp("fake_checkout")
    (path / "pcdet").mkdir()
    (path / "pcdet" / "__init__.py").write_text("from .version import __version__\n")
    return path


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"


@pytest.mark.parametrize("editable", [False, True], ids=["pip-install", "pip-install-e"])
def test_startup_hook_is_installed_and_live(tmp_path, source, fake_pcdet, editable):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = str(_python(env_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCDET_SEAL", "PYTHONPATH", "VIRTUAL_ENV"))}
    install = [python, "-m", "pip", "install", "-q", "--no-deps", *(["-e"] if editable else []), str(source)]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No matching distribution found for setuptools" in result.stderr:
        pytest.skip("pip cannot fetch the build requirements (setuptools>=70) here")
    assert result.returncode == 0, result.stderr[-3000:]

    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 60}  # cwd: not the work tree
    probe = subprocess.run([python, "-c", PROBE], **run)
    assert probe.stdout.split() == ["True", "True", "False"], probe.stderr

    where = subprocess.run([python, "-c", "import pcdet_seal; print(pcdet_seal.__file__)"], **run)
    assert Path(where.stdout.strip()).is_relative_to(source if editable else env_dir), where.stdout

    # The hook is live: on `import pcdet` it runs the plugin's start-up code (here: the hint that an
    # unbuilt checkout needs CPU mode), and PCDET_SEAL_AUTOLOAD=0 leaves the import alone.
    hooked = subprocess.run([python, "-c", "import pcdet"], **dict(run, env=dict(env, PYTHONPATH=str(fake_pcdet))))
    assert hooked.returncode != 0 and "PCDET_SEAL_CPU=1" in hooked.stderr, hooked.stderr[-2000:]
    plain = subprocess.run([python, "-c", "import pcdet"],
                           **dict(run, env=dict(env, PYTHONPATH=str(fake_pcdet), PCDET_SEAL_AUTOLOAD="0")))
    assert plain.returncode != 0 and "PCDET_SEAL_CPU" not in plain.stderr
    assert "No module named 'pcdet.version'" in plain.stderr
