"""``pcdet-seal-link-openpcdet``: a .pth in a fresh virtualenv's site-packages makes a checkout importable."""
from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checkout(folder: Path) -> Path:
    """A minimal source checkout: ``pcdet/__init__.py`` that says where it was imported from."""
    (folder / "pcdet").mkdir(parents=True)
    (folder / "pcdet" / "__init__.py").write_text("")
    return folder


@pytest.fixture()
def env_python(tmp_path) -> str:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    return str(env_dir / ("Scripts" if os.name == "nt" else "bin") / "python")


def _base_env() -> dict:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PCDET_SEAL", "PYTHONPATH", "VIRTUAL_ENV", "OPENPCDET_ROOT"))}


def _link(python: str, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = dict(_base_env(), PYTHONPATH=str(ROOT), **env_extra)  # the fresh venv runs the work tree's module
    return subprocess.run([python, "-m", "pcdet_seal.link_openpcdet", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _site(python: str) -> Path:
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         env=_base_env(), capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _imported_from(python: str) -> str:
    out = subprocess.run([python, "-c", "import pcdet; print(pcdet.__file__)"], env=_base_env(),
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def test_link_makes_the_checkout_importable_and_is_idempotent(tmp_path, env_python):
    first, second = _checkout(tmp_path / "OpenPCDet"), _checkout(tmp_path / "other" / "OpenPCDet")
    pth = _site(env_python) / "openpcdet_checkout.pth"
    assert _imported_from(env_python) == ""

    done = _link(env_python, str(first))
    assert done.returncode == 0, done.stderr
    assert pth.read_text() == f"{first}\n"
    assert f"wrote {pth}: {first}" in done.stdout and "warning" not in done.stderr
    assert _imported_from(env_python) == str(first / "pcdet" / "__init__.py")

    stamp = pth.stat().st_mtime_ns
    again = _link(env_python, str(first))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert pth.stat().st_mtime_ns == stamp

    moved = _link(env_python, str(second))
    assert moved.returncode == 0 and f"it named {first} before" in moved.stdout
    assert _imported_from(env_python) == str(second / "pcdet" / "__init__.py")
    assert [p.name for p in pth.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_default_is_openpcdet_root(tmp_path, env_python):
    checkout = _checkout(tmp_path / "checkout")
    done = _link(env_python, OPENPCDET_ROOT=str(checkout))
    assert done.returncode == 0, done.stderr
    assert (_site(env_python) / "openpcdet_checkout.pth").read_text() == f"{checkout}\n"


@pytest.mark.parametrize("make", ["empty", "missing"])
def test_refuses_a_folder_without_pcdet(tmp_path, env_python, make):
    folder = tmp_path / "not_a_checkout"
    if make == "empty":
        folder.mkdir()
    refused = _link(env_python, str(folder))
    assert refused.returncode == 2
    assert str(folder) in refused.stderr and ("pcdet/__init__.py" in refused.stderr or "not a folder" in refused.stderr)
    assert not (_site(env_python) / "openpcdet_checkout.pth").exists()
