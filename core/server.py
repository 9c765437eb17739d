"""The stdio loop NixOps4 talks to: one JSON request per line in, one response per line out.

Before any plugin code runs, the real stdout is kept for protocol only and
fd 1 is pointed at stderr (fd 0 at /dev/null), as NixOps4's own Rust
framework does: a ``print()``, an ``os.write(1, ...)`` or a child process in a
plugin then lands in the log instead of corrupting the stream.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import BinaryIO

from . import logs, requestline, wire
from .engine import Engine
from .errors import ProtocolError

__all__ = ["serve", "claim_stdio"]


class _Stop(Exception):
    """Raised from a signal handler to end the loop."""


def claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Take fds 0 and 1 for the protocol; leave /dev/null and stderr in their place."""
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr  # Python-level prints go to the log too
    return protocol_in, protocol_out


def _answer(engine: Engine, line: bytes) -> bytes:
    try:
        kind, body = requestline.parse_request(line)
    except ProtocolError as error:
        return wire.encode("errorResponse", {"message": str(error)})
    return wire.encode(*engine.handle(kind, body))


class _Loop:
    """The loop's phase decides what a signal does.

    Waiting for a line: stop at once (status 0).  Working on a request:
    interrupt it, answer with an ``errorResponse``, stop (status 1).  Writing
    an answer: finish the write, then stop (status 0), so a line is never cut.
    """

    def __init__(self, engine: Engine, protocol_in: BinaryIO, protocol_out: BinaryIO) -> None:
        self.engine, self.protocol_in, self.protocol_out = engine, protocol_in, protocol_out
        self.phase = "reading"
        self.stop_requested: str | None = None

    def on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        self.stop_requested = name
        if self.phase in ("reading", "working"):
            raise _Stop(name)

    def run(self) -> int:
        while self.stop_requested is None:
            try:
                self.phase = "reading"
                line = self.protocol_in.readline()
                if not line:
                    return 0
                self.phase = "working"
                answer = _answer(self.engine, line)
            except _Stop as stop:
                if self.phase == "reading":
                    return 0
                self.phase = "writing"
                logs.emit("provider", f"interrupted by {stop} in the middle of a request", level="warning")
                self.protocol_out.write(
                    wire.encode("errorResponse", {"message": f"interrupted by {stop} before the request finished"})
                )
                return 1
            self.phase = "writing"
            self.protocol_out.write(answer)
        return 0


def serve(
    engine: Engine | None = None,
    *,
    protocol_in: BinaryIO | None = None,
    protocol_out: BinaryIO | None = None,
) -> int:
    """Serve requests until EOF (status 0) or SIGTERM/SIGINT (status 0 between requests).

    Without explicit streams, claims the process's stdio first.
    """
    if protocol_in is None or protocol_out is None:
        protocol_in, protocol_out = claim_stdio()
    loop = _Loop(engine or Engine(), protocol_in, protocol_out)
    previous = {sig: signal.signal(sig, loop.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return loop.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
