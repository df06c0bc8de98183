"""pcdet-seal start-up hook, imported at interpreter start by ``pcdet_seal.pth``.

It only puts a finder on ``sys.meta_path`` that waits for the first ``import pcdet``; then it hands
over to :mod:`pcdet_seal.autoload` (CPU mode if ``PCDET_SEAL_CPU`` is on, plugin registration once
``pcdet.models`` / ``pcdet.datasets`` are imported). ``PCDET_SEAL_AUTOLOAD=0`` turns it off.
Processes that never import pcdet pay one string comparison per import. Standard library only.

Every environment variable the plugin reads or sets is named here, once (this module is the one
that must stay standard library only, and everything else may import it): the switches
``PCDET_SEAL_AUTOLOAD`` and ``PCDET_SEAL_CPU``, read with :func:`env_flag`: 1/0, true/false, yes/no,
on/off in any case (unset or empty: the default); any other value is an error naming the variable,
raised at the first ``import pcdet``. ``OPENPCDET_ROOT`` is the checkout that
``pcdet-seal-link-openpcdet`` links by default.
"""
import os
import sys

AUTOLOAD_ENV = "PCDET_SEAL_AUTOLOAD"
CPU_ENV = "PCDET_SEAL_CPU"
OPENPCDET_ROOT_ENV = "OPENPCDET_ROOT"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_flag(name, default):
    """The boolean switch ``name`` from the environment; ValueError for a value that is not one."""
    raw = os.environ.get(name, "")
    word = raw.strip().lower()
    if not word:
        return default
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("{}={!r} is not an on/off switch; use 1/0, true/false, yes/no or on/off (any case)".format(
        name, raw))


class PcdetImportWatcher:
    """A meta-path finder that finds nothing; it notices the first ``import pcdet``.

    ``error`` (a bad switch value found at start-up) is raised there instead of loading the plugin.
    """

    def __init__(self, error=None):
        self.armed = True
        self.error = error

    def find_spec(self, fullname, path=None, target=None):
        if not self.armed or fullname != "pcdet":
            return None
        self.armed = False
        if self.error is not None:
            raise ImportError("pcdet-seal start-up hook: {}".format(self.error))
        try:
            from pcdet_seal.autoload import on_first_pcdet_import

            on_first_pcdet_import()
        except Exception as error:
            raise ImportError(
                "pcdet-seal start-up hook failed before `import pcdet` ({}: {}); set {}=0 to import OpenPCDet "
                "without the plugin".format(type(error).__name__, error, AUTOLOAD_ENV)) from error
        return None


def install():
    """Put the watcher on ``sys.meta_path`` once, unless ``PCDET_SEAL_AUTOLOAD`` is off."""
    try:
        error = None
        if not env_flag(AUTOLOAD_ENV, True):
            return None
    except ValueError as bad_value:
        error = bad_value
    for finder in sys.meta_path:
        if isinstance(finder, PcdetImportWatcher):
            return finder
    watcher = PcdetImportWatcher(error)
    sys.meta_path.insert(0, watcher)
    return watcher


install()
