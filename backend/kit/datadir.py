"""The data directory holds admin password hashes, customer emails and the development keys: it and
everything in it are readable by their owner only (700 and 600), however it was created."""

from pathlib import Path


def secure(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
