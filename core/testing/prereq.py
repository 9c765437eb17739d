"""Prerequisites of tests that need real parts (root, namespaces, daemons, Nix).

Outside CI a missing prerequisite skips the test with the reason; with the
``CI`` environment variable set it fails it, so that a CI machine missing a
package can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require", "require_root", "require_executable"]


def require(condition: bool, reason: str) -> None:
    """Skip (or, under CI, fail) the calling test unless ``condition`` holds."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, mounts, daemons)")


def require_executable(name: str, package: str | None = None) -> str:
    """The path of ``name`` on PATH; ``package`` names what to install."""
    path = shutil.which(name) or (shutil.which(name, path="/usr/sbin:/sbin") if name else None)
    require(path is not None, f"needs {name!r} on PATH" + (f" (apt-get install {package})" if package else ""))
    return path  # type: ignore[return-value]
