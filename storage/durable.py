"""Durable file operations: fsync of files and directories, and atomic replacement of small files.

A file is replaced atomically by writing ``<name>.tmp``, fsyncing it, renaming it over ``<name>`` and
fsyncing the directory, so a crash leaves either the old or the new content, never a mix.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def sync_fd(fd: int) -> None:
    """Flush a file to stable storage. On macOS fsync() leaves data in the drive's cache; F_FULLFSYNC
    does not."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError:
            pass  # not supported by this file system: fall back to fsync
    os.fsync(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        sync_fd(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make renames, creations and deletions inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        sync_fd(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` all or nothing."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            sync_fd(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
