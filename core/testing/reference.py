"""Where the repository's verbatim reference data is: ``tests/reference/<name>``.

Test environments check themselves against other projects' published
documents (an API's OpenAPI description, its schema), copied verbatim into the
repository with their provenance.  A fresh clone must find them with nothing
beside it, so they are looked up in the checkout the package was installed
from (an editable install), else in the current directory or one above it
that is such a checkout.  An environment variable, when the caller names one
and it is set, wins: it points a test run at other copies of the documents.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["reference_path"]

_CHECKOUT = Path(__file__).resolve().parents[2]  # core/testing/reference.py -> the repository


def reference_path(*parts: str, env: str | None = None) -> Path:
    """``tests/reference/<parts...>`` of this project's checkout, or ``$env`` when that is set.

    The path is returned even when it does not exist, so that the caller's
    error can name where it looked.
    """
    if env and os.environ.get(env):
        return Path(os.environ[env])
    cwd = Path.cwd()
    for root in (_CHECKOUT, cwd, *cwd.parents):
        candidate = root.joinpath("tests", "reference", *parts)
        if (root / "pyproject.toml").is_file() and candidate.exists():
            return candidate
    return _CHECKOUT.joinpath("tests", "reference", *parts)
