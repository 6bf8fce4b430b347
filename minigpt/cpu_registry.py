"""Which minigpt processes compute on this machine's CPU: each holds an entry in a per-user folder
for as long as it computes (minigpt.threads gives each its share of the cores from their count).
Entries are files under an exclusive `flock`, which the OS drops when a process dies, so a killed
run never leaves a phantom behind.

Torch-free, so that the command line can join before its slow imports (`PROCESS_ENTRY`).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so each process keeps torch's own choice
    fcntl = None  # type: ignore[assignment]

REGISTRY = Path(tempfile.gettempdir()) / f"minigpt-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "cpu"


class CoreShare:
    """This process's entry among the minigpt processes computing on this machine's CPU."""

    def __init__(self, registry: Path | None = None) -> None:
        self._registry = registry
        self._entry: Path | None = None
        self._handle: int | None = None

    @property
    def registry(self) -> Path:
        return self._registry or REGISTRY

    def join(self) -> None:
        if fcntl is None or self._handle is not None:
            return
        self.registry.mkdir(parents=True, exist_ok=True)
        self._entry = self.registry / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.lock"
        self._handle = os.open(self._entry, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def leave(self) -> None:
        if self._handle is None:
            return
        assert self._entry is not None
        self._entry.unlink(missing_ok=True)
        os.close(self._handle)
        self._handle = self._entry = None

    def processes(self) -> int:
        """minigpt processes holding an entry now, this one included; stale entries are removed."""
        if fcntl is None or self._handle is None:
            return 1
        alive = 0
        for entry in self.registry.glob("*.lock"):
            if entry == self._entry:
                alive += 1
                continue
            try:
                handle = os.open(entry, os.O_RDWR)
            except FileNotFoundError:
                continue  # its process just left
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                alive += 1  # held: that process runs
            else:
                entry.unlink(missing_ok=True)  # nobody holds it: its process died
            finally:
                os.close(handle)
        return max(alive, 1)


# The entry of this process's training runs. `minigpt fit` (and the other Lightning commands, and
# `minigpt sweep`) join it as the command starts, seconds before a run chooses its threads: runs
# started together, and the ranks of a DDP run, are then all counted when each one chooses, and
# take an even share, rather than the first to choose taking every core for its whole run.
PROCESS_ENTRY = CoreShare()
