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


def _spellings(value: str) -> set[str]:
    """Every way the secret may be written in a message: as is, ``repr``, JSON, ``\\u`` escapes."""
    import json

    from .printable import printable

    forms = {
        value,
        repr(value)[1:-1],
        ascii(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1],  # \u escapes, as a JSON encoder writes them
        printable(value),
        value.encode("unicode_escape").decode("ascii"),
    }
    if any("\\u" in form for form in forms):  # \u00E9 as well as \u00e9
        import re

        forms |= {re.sub(r"\\u[0-9a-f]{4}", lambda m: m.group().upper().replace("\\U", "\\u"), form)
                  for form in forms}
    return {form for form in forms if len(form) >= _MIN_LENGTH}


def add_secret(value: object) -> None:
    """Remember a secret so that it is masked wherever it would be shown.

    Strings, and numbers (by their decimal text) of at least four characters.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return
    text = value if isinstance(value, str) else repr(value)
    if len(text) < _MIN_LENGTH:
        return
    forms = {text} if text.isascii() and text.isalnum() else _spellings(text)
    with _lock:
        _secrets.update(forms)


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
