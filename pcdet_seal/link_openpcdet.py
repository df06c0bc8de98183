"""``pcdet-seal-link-openpcdet [PATH]``: make an OpenPCDet source checkout importable.

Writes ``openpcdet_checkout.pth`` (one line: the checkout's absolute path) into the site-packages
of the Python that runs it, so every later process of that environment can ``import pcdet``.
No ``sys.path`` edits in code: Python's ``site`` module reads the file at start-up, as it reads
the plugin's own ``pcdet_seal.pth``. ``PATH`` defaults to ``$OPENPCDET_ROOT``, else
``/opt/OpenPCDet``. Refuses a folder without ``pcdet/__init__.py``; running it again with the
same checkout changes nothing; with another checkout it replaces the file and says so.
Standard library only (and ``pcdet_seal_autoload``, also standard library only, for the variable names).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from pcdet_seal_autoload import AUTOLOAD_ENV, OPENPCDET_ROOT_ENV

PROG = "pcdet-seal-link-openpcdet"
PTH_NAME = "openpcdet_checkout.pth"
DEFAULT_ROOT = "/opt/OpenPCDet"


class LinkError(RuntimeError):
    """The checkout or the site-packages folder cannot be used."""


def default_checkout() -> Path:
    """``$OPENPCDET_ROOT`` if set, else ``/opt/OpenPCDet``."""
    return Path(os.environ.get(OPENPCDET_ROOT_ENV) or DEFAULT_ROOT)


def site_packages() -> Path:
    """The site-packages folder of the running interpreter (a virtualenv's own when in one)."""
    return Path(sysconfig.get_paths()["purelib"])


def check_checkout(path: Path) -> Path:
    """The absolute checkout folder; raises :class:`LinkError` unless it holds ``pcdet/__init__.py``."""
    checkout = path.expanduser().resolve()
    if not checkout.is_dir():
        raise LinkError(f"{checkout} is not a folder (expected an OpenPCDet source checkout)")
    if not (checkout / "pcdet" / "__init__.py").is_file():
        raise LinkError(f"{checkout} has no pcdet/__init__.py: it is not an OpenPCDet source checkout "
                        f"(expected the folder that contains pcdet/, setup.py and tools/)")
    return checkout


def write_link(checkout: Path, site_dir: Path) -> tuple[Path, Optional[str]]:
    """Write ``site_dir/openpcdet_checkout.pth`` naming ``checkout`` (atomically).

    Returns ``(pth_path, previous)``: ``previous`` is the path the file named before (None when it
    did not exist). When it already names ``checkout`` nothing is written.
    """
    pth = site_dir / PTH_NAME
    line = f"{checkout}\n"
    previous = pth.read_text().strip() if pth.is_file() else None
    if previous == str(checkout):
        return pth, previous
    if not site_dir.is_dir() or not os.access(site_dir, os.W_OK):
        raise LinkError(f"cannot write into {site_dir} (site-packages of {sys.executable}); run it with the "
                        "Python of a virtualenv you own")
    fd, tmp = tempfile.mkstemp(prefix=f".{PTH_NAME}.", suffix=".tmp", dir=site_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(line)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; every user of the environment must read it
        os.replace(tmp, pth)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise LinkError(f"cannot write {pth}: {error}") from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return pth, previous


def resolved_pcdet() -> Optional[str]:
    """Where ``import pcdet`` resolves in a new process of this interpreter (None: not importable)."""
    code = "import importlib.util as u; s = u.find_spec('pcdet'); print(s.origin if s else '')"
    env = {**os.environ, AUTOLOAD_ENV: "0"}  # look the package up without running the plugin's hook
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return result.stdout.strip() or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Make an OpenPCDet source checkout importable in this Python environment by "
        f"writing {PTH_NAME} into its site-packages.")
    parser.add_argument("path", nargs="?", type=Path, default=None,
                        help=f"the checkout (the folder holding pcdet/); default ${OPENPCDET_ROOT_ENV}, "
                             f"else {DEFAULT_ROOT}")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status (0 linked, 2 refused)."""
    args = build_parser().parse_args(argv)
    try:
        checkout = check_checkout(args.path if args.path is not None else default_checkout())
        pth, previous = write_link(checkout, site_packages())
    except LinkError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    if previous == str(checkout):
        print(f"{pth} already names {checkout}; nothing to do")
    elif previous is None:
        print(f"wrote {pth}: {checkout}")
    else:
        print(f"wrote {pth}: {checkout} (it named {previous} before)")
    found = resolved_pcdet()
    expected = str(checkout / "pcdet" / "__init__.py")
    if found != expected:
        print(f"{PROG}: warning: `import pcdet` resolves to {found or 'nothing'}, not {expected}: another "
              "OpenPCDet comes first on sys.path in this environment", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
