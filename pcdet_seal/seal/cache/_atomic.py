"""Files that appear complete or not at all: atomic replacement, exclusive creation, and the temp
files behind both, named ``.<name>.<host>.<pid>.<random>.tmp`` so that only a process on the same
host that sees the owner's pid gone deletes one (:func:`temp_owner_gone`)."""
from __future__ import annotations

import glob
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any, Callable

#: This host in temp-file names (no dots, so that names split unambiguously).
HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "unknown-host"


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def temp_glob(path: Path) -> str:
    """A glob pattern matching every temp file of ``path``, of any host and process."""
    return glob.escape(str(path.parent / f".{path.name}.")) + "*.tmp"


def _write_temp(path: Path, write: Callable[[Any], None]) -> Path:
    """Write through ``write(file)`` into a fresh temp file next to ``path``, fsynced."""
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` into ``.<name>.<host>.<pid>.<random>.tmp`` next to ``path``,
    fsync, then rename: readers see the old file or the complete new one, never a partial one."""
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; True if this call created it.

    The complete file appears at once (a hard link of a fsynced temp file), so concurrent
    creators race safely: exactly one wins and readers never see a partial file. Where the file
    system has no hard links, ``O_EXCL`` creation is used instead.
    """
    tmp = _write_temp(path, lambda f: f.write(data))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network or FUSE file systems)
        try:
            with open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def temp_owner_gone(temp: Path) -> bool:
    """True only when the process that named ``temp`` provably no longer runs: the temp file
    names this host and a pid that does not exist. Other hosts' temps are never judged."""
    parts = temp.name.rsplit(".", 4)  # [".<frame>.npz", host, pid, random, "tmp"]
    if len(parts) != 5 or parts[4] != "tmp" or not parts[2].isdigit():
        return False
    return parts[1] == HOST and _pid_gone(int(parts[2]))
