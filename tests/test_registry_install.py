"""The start-up .pth hook and the console commands ship with both ``pip install .`` and ``pip install -e .``
(fresh venvs, no deps); every declared command resolves to an importable callable.

The wheels are built offline with this interpreter's setuptools through the PEP 517 backend of
``pyproject.toml`` (what pip's isolated build runs), when it satisfies ``[build-system] requires``;
otherwise pip builds them with build isolation, which needs a package index. Without either the
tests skip with :data:`OFFLINE_SKIP` in the reason, which the skip summary counts by name.
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from pcdet_seal_autoload import AUTOLOAD_ENV

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: pytest itself depends on tomli there
    import tomli as tomllib

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


def declared_console_scripts() -> dict[str, str]:
    """``{command: 'module:function'}`` as ``setup.py`` declares its ``console_scripts`` (read from its source)."""
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            lines = ast.literal_eval(node.value)["console_scripts"]
            return dict((part.strip() for part in line.split("=", 1)) for line in lines)
    raise AssertionError("setup.py declares no entry_points")


#: Counted by name in the skip summary (``OFFLINE_BUILD_SKIP`` of tests/conftest.py: the same text).
OFFLINE_SKIP = "no build requirements offline"


def _build_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]


def unmet_build_requirements() -> list[str]:
    """``[build-system] requires`` entries this interpreter does not satisfy, with what it has."""
    unmet = []
    for text in _build_requirements():
        requirement = Requirement(text)
        try:
            have = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(f"{text} (not installed)")
            continue
        if not requirement.specifier.contains(have, prereleases=True):
            unmet.append(f"{text} (installed: {have})")
    return unmet


def build_locally(source: Path, out_dir: Path, editable: bool) -> Path:
    """Build the (editable) wheel of ``source`` with this interpreter's build backend, no network."""
    hook = "build_editable" if editable else "build_wheel"
    code = f"import sys, setuptools.build_meta as backend; print(backend.{hook}(sys.argv[1]))"
    out_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-c", code, str(out_dir)], cwd=source, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / result.stdout.strip().splitlines()[-1]


def install_into(python: str, source: Path, work: Path, editable: bool, env: dict) -> None:
    """``pip install [-e] source`` into the venv of ``python``, offline when this interpreter can build."""
    if not unmet_build_requirements():
        wheel = build_locally(source, work / "wheels", editable)
        install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    else:
        install = [python, "-m", "pip", "install", "-q", "--no-deps", *(["-e"] if editable else []), str(source)]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No matching distribution found" in result.stderr:
        pytest.skip(f"{OFFLINE_SKIP}: pip cannot fetch {_build_requirements()} and this interpreter lacks "
                    f"{unmet_build_requirements()}")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("editable", [False, True], ids=["pip-install", "pip-install-e"])
def test_startup_hook_is_installed_and_live(tmp_path, source, fake_pcdet, editable):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = str(_python(env_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCDET_SEAL", "PYTHONPATH", "VIRTUAL_ENV"))}
    install_into(python, source, tmp_path, editable, env)

    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 60}  # cwd: not the work tree
    probe = subprocess.run([python, "-c", PROBE], **run)
    assert probe.stdout.split() == ["True", "True", "False"], probe.stderr

    where = subprocess.run([python, "-c", "import pcdet_seal; print(pcdet_seal.__file__)"], **run)
    assert Path(where.stdout.strip()).is_relative_to(source if editable else env_dir), where.stdout

    # The installed metadata lists setup.py's console commands, and each has its launcher.
    listed = subprocess.run([python, "-c", "import importlib.metadata as m; print('\\n'.join(f'{e.name} = {e.value}' "
                             "for e in m.distribution('pcdet-seal').entry_points if e.group == 'console_scripts'))"],
                            **run)
    installed = dict((part.strip() for part in line.split("=", 1)) for line in listed.stdout.splitlines())
    assert installed == declared_console_scripts(), listed.stderr[-2000:]
    assert all((_python(env_dir).parent / command).is_file() for command in installed)

    # The hook is live: on `import pcdet` it runs the plugin's start-up code (here: the hint that an
    # unbuilt checkout needs CPU mode), and PCDET_SEAL_AUTOLOAD=0 leaves the import alone.
    hooked = subprocess.run([python, "-c", "import pcdet"], **dict(run, env=dict(env, PYTHONPATH=str(fake_pcdet))))
    assert hooked.returncode != 0 and "PCDET_SEAL_CPU=1" in hooked.stderr, hooked.stderr[-2000:]
    plain = subprocess.run([python, "-c", "import pcdet"],
                           **dict(run, env=dict(env, PYTHONPATH=str(fake_pcdet), **{AUTOLOAD_ENV: "0"})))
    assert plain.returncode != 0 and "PCDET_SEAL_CPU" not in plain.stderr
    assert "No module named 'pcdet.version'" in plain.stderr


def test_every_console_command_resolves_to_an_importable_callable():
    commands = declared_console_scripts()
    assert {"pcdet-seal-link-openpcdet", "pcdet-seal-demo", "pcdet-seal-features", "pcdet-seal-check-cache",
            "pcdet-seal-check-transfer", "pcdet-seal-convert-checkpoint", "pcdet-seal-render",
            "pcdet-seal-waymo-submission"} <= set(commands)
    for command, target in commands.items():
        module_name, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attribute, None)), f"{command} = {target}"


def test_each_script_runs_the_function_of_a_console_command():
    """``scripts/<name>.py`` is a wrapper: it imports and runs the very function a command names."""
    targets = set(declared_console_scripts().values())
    for script in sorted((ROOT / "scripts").glob("*.py")):
        nodes = [node for node in ast.walk(ast.parse(script.read_text())) if isinstance(node, ast.ImportFrom)]
        imports = [f"{node.module}:{alias.name}" for node in nodes if (node.module or "").startswith("pcdet_seal")
                   for alias in node.names]
        assert len(imports) == 1 and imports[0] in targets, f"{script.name}: {imports}"
