"""Test kit for plugin authors: drivers, the conformance suite, real test environments.

Imported by tests only; nothing here is on the provider's start-up path.
"""

from . import conformance
from .drivers import Driver, InProcessDriver, SubprocessDriver
from .prereq import require, require_executable, require_root

__all__ = [
    "Driver",
    "InProcessDriver",
    "SubprocessDriver",
    "conformance",
    "require",
    "require_executable",
    "require_root",
]
