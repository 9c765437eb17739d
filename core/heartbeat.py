"""A line on stderr every few seconds while a long wait goes on.

NixOps4 shows a provider's stderr to the user; a Proxmox task, a guest agent
or a ``nix copy`` can take minutes, and silence then looks like a hang.  The
beat says what is awaited, for how long so far, and the limit, from a daemon
thread, so the waiting code needs no changes of its own.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["Heartbeat", "DEFAULT_INTERVAL"]

#: Seconds between two lines; waits shorter than this print nothing.
DEFAULT_INTERVAL = 5.0


class Heartbeat:
    """A context manager: ``with Heartbeat(emit, "task UPID:…", limit=900): wait()``."""

    def __init__(self, emit: Callable[[str], None], what: str, *, limit: float | None = None,
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.emit, self.what, self.limit, self.interval = emit, what, limit, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def __enter__(self) -> "Heartbeat":
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            elapsed = time.monotonic() - self._started
            limit = f", limit {self.limit:.0f}s" if self.limit is not None else ""
            self.beats += 1
            self.emit(f"still waiting for {self.what}: {elapsed:.0f}s so far{limit}")
