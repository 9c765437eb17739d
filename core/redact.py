"""Keep secrets out of everything a person or a log can read.

Providers register each secret they touch (a token read from a file, a
generated secret key, any value a schema marks ``x-sensitive``); the server
scrubs error messages with it, and every log line is scrubbed (core/logs).  It is
a safety net behind careful code, not a licence for careless code.
"""

from __future__ import annotations

import threading

__all__ = ["add_secret", "scrub", "MASK"]

MASK = "<redacted>"
_MIN_LENGTH = 4  # shorter values would mask ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()


def add_secret(value: object) -> None:
    """Remember a secret so that it is masked wherever it would be shown."""
    if isinstance(value, str) and len(value) >= _MIN_LENGTH:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every known secret replaced by :data:`MASK`."""
    if not _secrets:
        return text
    with _lock:
        ordered = sorted(_secrets, key=len, reverse=True)
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
