"""Files that hold secrets: created with an exact mode, read only when private to their owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from veritee.errors import ConfigError


def read_owner_only(path: Path, what: str, *, max_bytes: int = 1 << 20) -> bytes:
    """Read a secret file, refusing one that group or others may read (POSIX).

    The mode is checked on the opened descriptor (no race with a rename), and
    symlinks are followed on purpose: Kubernetes mounts secrets as symlinks.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigError(
                f"{what} {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"chmod 600 {path}",
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(max_bytes + 1)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes, what: str, *, mode: int = 0o600) -> None:
    """Create ``path`` with exactly ``mode`` and write ``data``; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(
            f"{what} {path} already exists; refusing to overwrite it",
            hint="move the old file away first if you really mean to replace it",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask may only have narrowed it; make it exact
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
