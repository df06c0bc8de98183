"""pcdet-seal start-up hook, imported at interpreter start by ``pcdet_seal.pth``.

It only puts a finder on ``sys.meta_path`` that waits for the first ``import pcdet``; then it hands
over to :mod:`pcdet_seal.autoload` (CPU mode if ``PCDET_SEAL_CPU=1``, plugin registration once
``pcdet.models`` / ``pcdet.datasets`` are imported). ``PCDET_SEAL_AUTOLOAD=0`` turns it off.
Processes that never import pcdet pay one string comparison per import. Standard library only.
"""
import os
import sys

AUTOLOAD_ENV = "PCDET_SEAL_AUTOLOAD"


class PcdetImportWatcher:
    """A meta-path finder that finds nothing; it notices the first ``import pcdet``."""

    def __init__(self):
        self.armed = True

    def find_spec(self, fullname, path=None, target=None):
        if not self.armed or fullname != "pcdet":
            return None
        self.armed = False
        try:
            from pcdet_seal.autoload import on_first_pcdet_import

            on_first_pcdet_import()
        except Exception as error:
            raise ImportError(
                "pcdet-seal start-up hook failed before `import pcdet` ({}: {}); set {}=0 to import OpenPCDet "
                "without the plugin".format(type(error).__name__, error, AUTOLOAD_ENV)) from error
        return None


def install():
    """Put the watcher on ``sys.meta_path`` once, unless ``PCDET_SEAL_AUTOLOAD=0``."""
    if os.environ.get(AUTOLOAD_ENV, "1") == "0":
        return None
    for finder in sys.meta_path:
        if isinstance(finder, PcdetImportWatcher):
            return finder
    watcher = PcdetImportWatcher()
    sys.meta_path.insert(0, watcher)
    return watcher


install()
