"""Test kit for plugin authors: drivers, the conformance suite, real test environments.

Imported by tests only; nothing here is on the provider's start-up path.
"""

def _require_the_testing_extra() -> None:
    """Fail at import, naming the extra, rather than deep inside a test (found, not imported: import is slow)."""
    from importlib.util import find_spec

    for name in ("pytest", "hypothesis", "hypothesis_jsonschema"):
        if find_spec(name) is None:
            raise ImportError(f"fediversity_providers.testing needs {name}, which comes with the 'testing' "
                              "extra: pip install 'fediversity-providers[testing]'", name=name)


_require_the_testing_extra()

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
