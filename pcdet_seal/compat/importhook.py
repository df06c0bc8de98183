"""One meta-path finder that lets the plugin act on named modules as they are imported.

For a module name it can supply a module when no other finder finds one (``when_missing``),
run code around the real module's execution (``around_exec``), run code right after it
(``after_exec``, before any other module can bind its names), or replace a module whose
execution failed (``on_error``). Modules already imported get their ``after_exec`` at once.
Standard library only: importing this module costs nothing.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, ContextManager, Iterator, Optional, Sequence

logger = logging.getLogger(__name__)

MissingFactory = Callable[[str], ModuleType]
AfterExec = Callable[[ModuleType], None]
AroundExec = Callable[[str], ContextManager[None]]
OnError = Callable[[str, BaseException], Optional[ModuleType]]


@dataclass
class ModuleHooks:
    """What the finder does for one module name (each list runs in order of registration)."""

    when_missing: Optional[MissingFactory] = None
    around_exec: list[AroundExec] = field(default_factory=list)
    after_exec: list[AfterExec] = field(default_factory=list)
    on_error: list[OnError] = field(default_factory=list)

    def wraps_loader(self) -> bool:
        return bool(self.around_exec or self.after_exec or self.on_error)


class _HookedLoader(importlib.abc.Loader):
    """Delegates to the real loader; adds the hooks of one module around ``exec_module``."""

    def __init__(self, real: importlib.abc.Loader, hooks: ModuleHooks) -> None:
        self._real = real
        self._hooks = hooks

    def __getattr__(self, name: str):  # get_source, get_resource_reader, is_package, ...
        return getattr(self._real, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self._real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        try:
            with contextlib.ExitStack() as stack:
                for around in self._hooks.around_exec:
                    stack.enter_context(around(name))
                self._real.exec_module(module)
        except Exception as error:  # noqa: BLE001 - handed to the on_error hooks, else re-raised
            for handler in self._hooks.on_error:
                replacement = handler(name, error)
                if replacement is not None:
                    # importlib returns sys.modules[name] after exec_module: the replacement wins.
                    sys.modules[name] = replacement
                    _set_parent_attribute(name, replacement)
                    return
            raise
        for after in self._hooks.after_exec:
            after(module)


class _SuppliedLoader(importlib.abc.Loader):
    """Builds a module that no other finder could find."""

    def __init__(self, factory: MissingFactory) -> None:
        self._factory = factory

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = self._factory(spec.name)
        module.__spec__ = spec
        module.__loader__ = self
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


def _set_parent_attribute(name: str, module: ModuleType) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = sys.modules.get(parent_name) if parent_name else None
    if parent is not None:
        setattr(parent, child, module)


class HookFinder(importlib.abc.MetaPathFinder):
    """The plugin's meta-path finder (one per process; see :func:`get_finder`)."""

    def __init__(self) -> None:
        self._hooks: dict[str, ModuleHooks] = {}
        self._busy = threading.local()

    def hooks(self, name: str) -> ModuleHooks:
        return self._hooks.setdefault(name, ModuleHooks())

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        hooks = self._hooks.get(fullname)
        if hooks is None:
            return None
        busy = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:  # another finder asked the meta path again: stay out of it
            return None
        busy.add(fullname)
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None:
            if hooks.when_missing is None:
                return None
            logger.debug("pcdet-seal: supplying module %s", fullname)
            return importlib.util.spec_from_loader(fullname, _SuppliedLoader(hooks.when_missing))
        if hooks.wraps_loader() and spec.loader is not None:
            spec.loader = _HookedLoader(spec.loader, hooks)
        return spec


def _find_with_others(me: HookFinder, fullname: str, path: Optional[Sequence[str]],
                      target: Optional[ModuleType]) -> Optional[importlib.machinery.ModuleSpec]:
    for finder in list(sys.meta_path):
        if finder is me or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


_FINDER_LOCK = threading.Lock()


def get_finder() -> HookFinder:
    """The process's :class:`HookFinder`, inserted at the front of ``sys.meta_path`` once."""
    with _FINDER_LOCK:
        for finder in sys.meta_path:
            if isinstance(finder, HookFinder):
                return finder
        finder = HookFinder()
        sys.meta_path.insert(0, finder)
        return finder


def supply_if_missing(name: str, factory: MissingFactory) -> None:
    """Let ``import name`` build ``factory(name)`` when no other finder finds ``name``."""
    get_finder().hooks(name).when_missing = factory


def after_import(name: str, callback: AfterExec) -> None:
    """Run ``callback(module)`` right after ``name`` executes, or now if it is already imported."""
    get_finder().hooks(name).after_exec.append(callback)
    module = sys.modules.get(name)
    if module is not None and not _initializing(module):
        callback(module)


def around_import(name: str, context: AroundExec) -> None:
    """Run the real execution of ``name`` inside ``context(name)``."""
    get_finder().hooks(name).around_exec.append(context)


def on_import_error(name: str, handler: OnError) -> None:
    """When executing ``name`` raises, ``handler(name, error)`` may return a module to use instead."""
    get_finder().hooks(name).on_error.append(handler)


def _initializing(module: ModuleType) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


@contextlib.contextmanager
def temporarily_in_sys_modules(name: str, module: ModuleType) -> Iterator[None]:
    """Make ``import name`` give ``module`` inside the block only (unless it was there before)."""
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield
    finally:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
