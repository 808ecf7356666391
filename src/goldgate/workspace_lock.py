"""One writer per workspace: an exclusive ``flock`` on ``<workspace>/.goldgate.lock``.

The lock is advisory and held by an open file descriptor, so the kernel releases it when the holder exits for
any reason, SIGKILL included: a crashed run never leaves a stale lock behind. The holder writes its pid and
command line into the file, so a refused process can say who is busy.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".goldgate.lock"
POLL_SECONDS = 0.2


class WorkspaceBusyError(RuntimeError):
    """Another goldgate process holds the workspace lock."""


def _holder(path: Path) -> str:
    """``pid N, command ...`` as written by the current holder (best effort: the file may be mid-rewrite)."""
    try:
        pid, _, command = path.read_text(encoding="utf-8").partition("\n")
    except OSError:
        return "pid unknown, command unknown"
    return f"pid {pid.strip() or 'unknown'}, command {command.strip() or 'unknown'}"


@contextmanager
def workspace_lock(workspace: Path, wait: float = 0.0) -> Iterator[Path]:
    """Hold the workspace's exclusive lock for the duration of the block.

    Non-blocking by default: raises :class:`WorkspaceBusyError` at once when another process holds it. With
    ``wait`` > 0, polls every ``POLL_SECONDS`` for at most ``wait`` seconds before raising.
    """
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    path = workspace / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WorkspaceBusyError(
                        f"workspace {workspace} is busy: another goldgate process ({_holder(path)}) holds it"
                    ) from None
                time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{' '.join(sys.argv)}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
