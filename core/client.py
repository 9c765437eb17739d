"""Talk to any NixOps4 provider as NixOps4 does: spawn it, write a line, read a line.

The runner CLI and the subprocess test driver both use this, so the real
protocol is exercised end to end, byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Sequence

from . import messages as m
from .errors import ProtocolError, ProviderError, TimedOut, from_message
from .wire import parse_line

__all__ = ["ProviderProcess", "default_provider_argv", "response_payload"]


def default_provider_argv() -> list[str]:
    """This suite's own ``serve``, with the interpreter running now.

    ``-P``: the current directory is not put first on ``sys.path``, so a
    checkout (a plugin's source directory, say) cannot shadow what is installed.
    """
    return [sys.executable, "-P", "-m", "fediversity_providers", "serve"]


class ProviderProcess:
    """One provider process serving requests in order until closed."""

    def __init__(self, argv: Sequence[str] | None = None, *, env: dict[str, str] | None = None,
                 stderr: int | None = None, timeout: float | None = None) -> None:
        """``timeout``: seconds each answer, and the exit after the last, may take before the provider
        (with whatever it started: it runs in a session of its own then) is killed."""
        self.argv = list(argv) if argv else default_provider_argv()
        self.timeout = timeout
        try:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                start_new_session=timeout is not None,
            )
        except OSError as exc:
            raise ProviderError(
                f"cannot start the provider {self.argv[0]!r}: {exc.strerror}",
                hint="check --provider-exe: it must be an executable NixOps4 provider",
            ) from None

    def send(self, message: dict, *, timeout: float | None = None) -> dict:
        """Write one request value, return the one response value.

        The answer is parsed as strictly as NixOps4 does (``NaN``, lone
        surrogates, nesting deeper than 64 are a :class:`ProtocolError`).
        """
        line = json.dumps(message, separators=(",", ":")) + "\n"
        answer = self.send_line(line.encode(), timeout=timeout)
        try:
            return parse_line(answer)
        except ProtocolError as error:
            raise ProtocolError(f"the provider {self.argv[0]!r} answered something NixOps4 cannot read: "
                                f"{error.message}", hint="the provider has a bug: report it to its authors") from None

    def send_line(self, line: bytes, *, timeout: float | None = None) -> bytes:
        """Write one raw line, return the raw response line.

        With ``timeout``, a provider that has not answered within that many
        seconds is killed and the wait ends with a :class:`TimedOut`.
        """
        assert self._process.stdin and self._process.stdout
        try:
            self._process.stdin.write(line)
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the read below reports the exit
        timeout = self.timeout if timeout is None else timeout
        killer, fired = None, threading.Event()

        def stop() -> None:
            fired.set()
            self._kill()

        if timeout is not None:
            killer = threading.Timer(timeout, stop)
            killer.daemon = True
            killer.start()
        try:
            answer = self._process.stdout.readline()
        finally:
            if killer is not None:
                killer.cancel()
        if not answer:
            status = self._process.wait()
            if fired.is_set():
                raise TimedOut(f"the provider {self.argv[0]!r} did not answer within {timeout:g}s and was stopped",
                               hint="raise --timeout, or look at its stderr above for what it was doing")
            raise ProtocolError(
                f"the provider {self.argv[0]!r} exited with status {status} without answering",
                hint="its stderr above says why",
            )
        return answer

    def request(self, request: object, *, timeout: float | None = None) -> object:
        """Send a request object; return the response object or raise the error it reports."""
        body = m.converter.unstructure(request)
        response = m.decode(self.send({m.kind_of(request): body}, timeout=timeout))
        if isinstance(response, m.ErrorResponse):
            raise from_message(response.message)
        return response

    def _kill(self) -> None:
        """The provider and, when it has a session of its own, everything it started there."""
        if self.timeout is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
                return
            except (ProcessLookupError, PermissionError):
                pass
        self._process.kill()

    def close(self) -> int:
        """EOF on stdin, then wait (at most ``timeout``, then kill): a provider must exit 0."""
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            status = self._process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            self._process.wait()
            raise TimedOut(f"the provider {self.argv[0]!r} did not exit within {self.timeout:g}s after its "
                           "answer and was stopped", hint="raise --timeout, or look at its stderr above") from None
        if self._process.stdout:
            self._process.stdout.close()
        return status

    @property
    def pid(self) -> int:
        return self._process.pid

    def __enter__(self) -> "ProviderProcess":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self._process.poll() is None:
            if exc_type is not None and self.timeout is not None:
                self._kill()  # the request already failed: do not wait for the provider too
                self._process.wait()
            else:
                self.close()


def response_payload(response: object) -> dict:
    """What the runner prints: the outputs, or the state, or ``{}``."""
    for attr in ("output_properties", "state"):
        if hasattr(response, attr):
            return getattr(response, attr)
    return {}


