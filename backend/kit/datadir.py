"""The data directory: private to its owner (it holds admin password hashes, customer emails and the
development keys: 700 and 600, however it was created), and held by `pers up` while it runs: its chain lives
in that process, so commands that would deploy or record contracts for its tenants refuse instead of working
on a chain of their own."""

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from backend.kit.errors import PersError

LOCK_FILE = "up.lock"


class DataDirInUse(PersError):
    code = "data_dir_in_use"
    status = 409


def _holder(path: Path) -> str:
    try:
        found = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        found = {}
    return f"`pers up` (pid {found.get('pid', '?')}, port {found.get('port', '?')})"


def hold(data_dir: Path, port: int) -> IO[str]:
    """Takes the data directory for this `pers up`; the lock goes with the process, however it ends."""
    secure(data_dir)
    path = data_dir / LOCK_FILE
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(f"{_holder(path)} is already running on {data_dir.resolve()}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "port": port}))
    handle.flush()
    return handle


def ensure_free(data_dir: Path, doing: str) -> None:
    """Refuses `doing` while a `pers up` holds the data directory."""
    path = data_dir / LOCK_FILE
    if not path.exists():
        return
    with path.open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUse(f"{_holder(path)} is running on {data_dir.resolve()}: {doing}") from None


def secure(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
