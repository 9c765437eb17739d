"""The stdio loop NixOps4 talks to: one JSON request per line in, one response per line out.

Before any plugin code runs, the real stdout is kept for protocol only and
fd 1 is pointed at stderr (fd 0 at /dev/null), as NixOps4's own Rust
framework does: a ``print()``, an ``os.write(1, ...)`` or a child process in a
plugin then lands in the log instead of corrupting the stream.

Every line read gets exactly one answer line.  A line longer than
:data:`MAX_LINE_ENV` allows is skipped in bounded chunks, never held whole.
The exit status is 0 when every request read was answered with its result
(EOF, or SIGTERM/SIGINT between requests), 1 when one was not (a signal
interrupted it, or its answer could not be written because the reader is
gone).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import BinaryIO

from . import answers, interrupt, logs, requestline, wire
from .engine import Engine
from .errors import ProtocolError
from .interrupt import Interrupted

__all__ = [
    "serve", "claim_stdio", "MAX_LINE_ENV", "DEFAULT_MAX_LINE", "CLEANUP_ENV", "DEFAULT_CLEANUP_SECONDS",
]

MAX_LINE_ENV = "FEDIVERSITY_PROVIDERS_MAX_LINE_BYTES"
DEFAULT_MAX_LINE = 16 * 1024 * 1024
CLEANUP_ENV = "FEDIVERSITY_PROVIDERS_CLEANUP_SECONDS"
DEFAULT_CLEANUP_SECONDS = 10.0
_SKIP_CHUNK = 64 * 1024


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


def _setting(name: str, default: float, cast: type) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = cast(raw)
        if value > 0:
            return value
    except ValueError:
        pass
    logs.emit("provider", f"ignoring {name}={raw!r}: not a positive number; using {default}", level="warning")
    return default


def _read_line(stream: BinaryIO, limit: int) -> bytes | None:
    """The next line (``b""`` at EOF), or None for one longer than ``limit``, skipped unread."""
    line = stream.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line
    while True:  # too long: drop the rest of it in bounded chunks
        chunk = stream.readline(_SKIP_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return None


def _answer(engine: Engine, line: bytes | None, limit: int) -> tuple[str, dict]:
    """The response to one line; any failure of the core is an ``errorResponse`` too."""
    try:
        if line is None:
            raise ProtocolError(
                f"the line is longer than {limit} bytes, so it was skipped without being read "
                f"(set {MAX_LINE_ENV} to allow longer lines; nothing was changed)"
            )
        kind, body = requestline.parse_request(line)
        return engine.handle(kind, body)
    except ProtocolError as error:
        return "errorResponse", {"message": str(error)}
    except Exception as error:  # the core's own bug: still one answer per line
        return "errorResponse", {"message": (
            f"provider: internal error in fediversity-providers' core: {type(error).__name__}: {error} "
            "(a bug in fediversity-providers; please report it)"
        )}


class _Loop:
    """The loop's phase decides what a signal does.

    Waiting for a line: stop at once.  Inside a plugin method: raise
    :class:`Interrupted` there (the plugin's ``finally`` blocks run), answer
    that the request was interrupted, stop.  Anywhere else (the core
    checking, encoding or writing an answer): finish and write the answer,
    then stop, so that a line is never cut and finished work is never lost.
    Clean-up after the signal may take :data:`CLEANUP_ENV` seconds; then, or at
    a second signal, the answer is written and the process exits at once.
    """

    def __init__(self, engine: Engine, protocol_in: BinaryIO, protocol_out: BinaryIO) -> None:
        self.engine, self.protocol_in, self.protocol_out = engine, protocol_in, protocol_out
        self.max_line = int(_setting(MAX_LINE_ENV, DEFAULT_MAX_LINE, int))
        self.cleanup_seconds = _setting(CLEANUP_ENV, DEFAULT_CLEANUP_SECONDS, float)
        self.phase = "reading"
        self.stop: str | None = None
        self.write_lock = threading.Lock()
        self.answered = True  # nothing is pending before the first line
        self.reader_gone = False

    def on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.stop is not None:
            if self.phase == "working":
                self.give_up(f"a second {name}")
            return
        self.stop = interrupt.PLUGIN.stop = name
        if self.phase == "reading":
            raise Interrupted(name)
        if self.phase == "working":
            timer = threading.Timer(self.cleanup_seconds, self.give_up, args=(f"{self.cleanup_seconds:g} s",))
            timer.daemon = True
            timer.start()
            if interrupt.plugin_running():
                raise Interrupted(name)

    def interrupted_line(self) -> bytes:
        return wire.encode("errorResponse", {"message": (
            f"provider: interrupted by {self.stop} before the request finished; what it was doing may be "
            "half done: read or re-apply the resource to see where it stands"
        )})

    def give_up(self, after: str) -> None:
        """Clean-up took too long: answer for the request now, and exit without waiting."""
        logs.emit("provider", f"clean-up after {self.stop} not finished after {after}; exiting now", level="error")
        status = 1
        if self.write_lock.acquire(timeout=1.0):
            if self.answered:
                status = 0  # the real answer went out meanwhile
            else:
                self.write(self.interrupted_line())
        os._exit(status)

    def write(self, line: bytes) -> bool:
        """Write one whole line; False (and no raise) when the reader is gone."""
        try:
            view = memoryview(line)
            while view:
                written = self.protocol_out.write(view)
                view = view[written if written is not None else 0:]
            flush = getattr(self.protocol_out, "flush", None)
            if flush is not None:
                flush()
        except OSError as error:  # EPIPE: NixOps4 went away
            if not self.reader_gone:
                logs.emit("provider", f"the protocol reader is gone ({error.strerror or error}); stopping",
                          level="warning")
            self.reader_gone = True
            return False
        self.answered = True
        return True

    def run(self) -> int:
        while self.stop is None:
            try:
                self.phase = "reading"
                line = _read_line(self.protocol_in, self.max_line)
                if line == b"":
                    return 0
                self.answered = False
                self.phase = "working"
                kind, body = _answer(self.engine, line, self.max_line)
                encoded = self._encode(kind, body)
            except Interrupted:
                if self.phase == "reading":
                    return 0
                self.phase = "writing"
                logs.emit("provider", f"interrupted by {self.stop} in the middle of a request", level="warning")
                with self.write_lock:
                    self.write(self.interrupted_line())
                return 1
            self.phase = "writing"
            with self.write_lock:
                if not self.write(encoded):
                    answers.report_unsent("provider", kind, body, "the protocol reader is gone")
                    return 1
        return 0

    @staticmethod
    def _encode(kind: str, body: dict) -> bytes:
        try:
            return wire.encode(kind, body)
        except (ValueError, UnicodeEncodeError, RecursionError, TypeError) as error:
            answers.report_unsent("provider", kind, body, f"it cannot be written as JSON: {error}")
            return wire.encode("errorResponse", {"message": (
                f"provider: plugin error: the answer cannot be written as JSON ({error}); "
                "what it held is logged on stderr (this is a bug in the plugin)"
            )})


def serve(
    engine: Engine | None = None,
    *,
    protocol_in: BinaryIO | None = None,
    protocol_out: BinaryIO | None = None,
) -> int:
    """Serve requests until EOF or SIGTERM/SIGINT; the status is as the module says.

    Without explicit streams, claims the process's stdio first.
    """
    if protocol_in is None or protocol_out is None:
        protocol_in, protocol_out = claim_stdio()
    engine = engine or Engine()
    loop = _Loop(engine, protocol_in, protocol_out)
    engine.plugin_guard = interrupt.PLUGIN
    previous = {sig: signal.signal(sig, loop.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return loop.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
