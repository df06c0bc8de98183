"""The plugin's meta-path finder: supply missing modules, hook around/after execution, replace failures."""
from __future__ import annotations

import contextlib
import importlib
import sys
import uuid
from types import ModuleType

import pytest

from pcdet_seal.compat import importhook


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh, uniquely named package on sys.path; its modules are dropped from sys.modules after."""
    name = f"hooktest_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def test_finder_is_installed_once_at_the_front():
    finder = importhook.get_finder()
    assert importhook.get_finder() is finder
    assert sum(isinstance(f, importhook.HookFinder) for f in sys.meta_path) == 1
    assert sys.meta_path.index(finder) < sys.meta_path.index(importlib.machinery.PathFinder)


def test_supply_if_missing_only_when_no_real_module(package):
    name, path = package
    made = []

    def factory(fullname: str) -> ModuleType:
        made.append(fullname)
        module = ModuleType(fullname)
        module.origin = "supplied"
        return module

    importhook.supply_if_missing(f"{name}.absent", factory)
    importhook.supply_if_missing(f"{name}.present", factory)
    (path / "present.py").write_text("origin = 'real'\n")
    assert importlib.import_module(f"{name}.absent").origin == "supplied"
    assert importlib.import_module(f"{name}.present").origin == "real"
    assert made == [f"{name}.absent"]


def test_after_import_runs_before_importers_bind_names(package):
    name, path = package
    (path / "wrapped.py").write_text("def f():\n    return 'original'\n")
    (path / "user.py").write_text(f"from {name}.wrapped import f\n")

    def patch(module: ModuleType) -> None:
        module.f = lambda: "patched"

    importhook.after_import(f"{name}.wrapped", patch)
    user = importlib.import_module(f"{name}.user")
    assert user.f() == "patched"


def test_after_import_applies_at_once_to_a_loaded_module(package):
    name, path = package
    (path / "loaded.py").write_text("value = 1\n")
    module = importlib.import_module(f"{name}.loaded")
    importhook.after_import(f"{name}.loaded", lambda m: setattr(m, "value", 2))
    assert module.value == 2


def test_around_import_wraps_execution(package):
    name, path = package
    (path / "inside.py").write_text("import marker_module_for_hook_test as marker\n")
    stand_in = ModuleType("marker_module_for_hook_test")

    @contextlib.contextmanager
    def provide(fullname: str):
        with importhook.temporarily_in_sys_modules("marker_module_for_hook_test", stand_in):
            yield

    importhook.around_import(f"{name}.inside", provide)
    assert importlib.import_module(f"{name}.inside").marker is stand_in
    assert "marker_module_for_hook_test" not in sys.modules  # only during that module's execution


def test_on_import_error_replaces_a_failing_module_and_else_reraises(package):
    name, path = package
    (path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (path / "also_broken.py").write_text("raise RuntimeError('boom too')\n")
    replacement = ModuleType(f"{name}.broken")
    importhook.on_import_error(f"{name}.broken", lambda fullname, error: replacement)
    importhook.on_import_error(f"{name}.also_broken", lambda fullname, error: None)
    assert importlib.import_module(f"{name}.broken") is replacement
    with pytest.raises(RuntimeError, match="boom too"):
        importlib.import_module(f"{name}.also_broken")
