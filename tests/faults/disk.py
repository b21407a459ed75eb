"""Disks the fault suite can fill: a service's data directory on a small filesystem of its own.

A full disk cannot be made on the machine's real disk (tens of gigabytes free, shared with
everything else), so the suite mounts a size-limited ``tmpfs`` at the data directories of
the Kafka broker and of the population store before they start (``SmallDisks.mount``).
``fill`` then takes every free byte of one with a file of its own, and ``free`` deletes it:
the service meets ``No space left on device`` exactly where it would in production.

Mounting needs root (CAP_SYS_ADMIN); where it is refused, the disk faults cannot run and
say why (``NoDiskToFillError``). A mount left by a suite that was killed is used again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import subprocess
from pathlib import Path

FILLER = ".civsync-fault-filler"
_CHUNK = 1 << 20


class NoDiskToFillError(Exception):
    """This machine does not let the suite mount a filesystem to fill."""


class SmallDisks:
    """``tmpfs`` mounts of ``size_mb`` each, by data directory; ``owner`` owns a mount's
    root (PostgreSQL refuses a data directory it does not own)."""

    def __init__(self, size_mb: int = 1024) -> None:
        self.size_mb = size_mb
        self.mounted: list[Path] = []
        self.refused: str | None = None  # why mounting was refused, if it was

    def mount(self, path: Path, owner: str | None = None) -> None:
        """A small filesystem at ``path`` (hiding what was there: the service starts anew)."""
        if os.path.ismount(path):  # left by a suite that was killed, maybe full
            self.free(path)
            self.mounted.append(path)
            return
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={self.size_mb}m,mode=0700"
        if owner is not None and os.geteuid() == 0:
            account = pwd.getpwnam(owner)
            options += f",uid={account.pw_uid},gid={account.pw_gid}"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            self.refused = f"mounting a tmpfs at {path}: {done.stderr.strip() or done.returncode}"
            return
        self.mounted.append(path)

    def unmount(self) -> None:
        """Every mount made here, once its service has stopped."""
        for path in reversed(self.mounted):
            subprocess.run(["umount", str(path)], capture_output=True, check=False)
        self.mounted.clear()

    def fill(self, path: Path) -> int:
        """Take every free byte of the filesystem at ``path``; the bytes taken."""
        if self.refused is not None or path not in self.mounted:
            raise NoDiskToFillError(self.refused or f"no small disk at {path}")
        taken, size = 0, _CHUNK
        with (path / FILLER).open("ab", buffering=0) as filler:
            while size:  # smaller and smaller writes, until not one byte fits
                try:
                    taken += filler.write(bytes(size)) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size //= 2
        return taken

    @staticmethod
    def free(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            (path / FILLER).unlink()
