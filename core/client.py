"""Talk to any NixOps4 provider as NixOps4 does: spawn it, write a line, read a line.

The runner CLI and the subprocess test driver both use this, so the real
protocol is exercised end to end, byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Sequence

from . import messages as m
from .errors import ProtocolError, ProviderError, from_message

__all__ = ["ProviderProcess", "default_provider_argv", "response_payload"]


def default_provider_argv() -> list[str]:
    """This suite's own ``serve``, with the interpreter running now."""
    return [sys.executable, "-m", "fediversity_providers", "serve"]


class ProviderProcess:
    """One provider process serving requests in order until closed."""

    def __init__(self, argv: Sequence[str] | None = None, *, env: dict[str, str] | None = None,
                 stderr: int | None = None) -> None:
        self.argv = list(argv) if argv else default_provider_argv()
        try:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        except OSError as exc:
            raise ProviderError(
                f"cannot start the provider {self.argv[0]!r}: {exc.strerror}",
                hint="check --provider-exe: it must be an executable NixOps4 provider",
            ) from None

    def send(self, message: dict) -> dict:
        """Write one request value, return the one response value, raw."""
        line = json.dumps(message, separators=(",", ":")) + "\n"
        return json.loads(self.send_line(line.encode()))

    def send_line(self, line: bytes) -> bytes:
        """Write one raw line, return the raw response line."""
        assert self._process.stdin and self._process.stdout
        try:
            self._process.stdin.write(line)
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the read below reports the exit
        answer = self._process.stdout.readline()
        if not answer:
            status = self._process.wait()
            raise ProtocolError(
                f"the provider {self.argv[0]!r} exited with status {status} without answering",
                hint="its stderr above says why",
            )
        return answer

    def request(self, request: object) -> object:
        """Send a request object; return the response object or raise the error it reports."""
        body = m.converter.unstructure(request)
        response = m.decode(self.send({m.kind_of(request): body}))
        if isinstance(response, m.ErrorResponse):
            raise from_message(response.message)
        return response

    def close(self) -> int:
        """EOF on stdin, then wait: a provider must exit 0."""
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()
        status = self._process.wait()
        if self._process.stdout:
            self._process.stdout.close()
        return status

    @property
    def pid(self) -> int:
        return self._process.pid

    def __enter__(self) -> "ProviderProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.poll() is None:
            self.close()


def response_payload(response: object) -> dict:
    """What the runner prints: the outputs, or the state, or ``{}``."""
    for attr in ("output_properties", "state"):
        if hasattr(response, attr):
            return getattr(response, attr)
    return {}


