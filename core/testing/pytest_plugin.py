"""The pytest plugin (entry point ``pytest11``): the kit's generic fixtures, ready to use.

Each generic test environment module adds its fixtures by being imported here.
A provider's own test environment registers its fixtures through a
``pytest11`` entry point of its own, as its resource type registers through
``fediversity_providers``: this plugin knows no provider.
"""

from __future__ import annotations

import pytest

from .drivers import InProcessDriver, SubprocessDriver


@pytest.fixture
def provider_driver():
    """An in-process driver over every installed plugin."""
    with InProcessDriver() as driver:
        yield driver


@pytest.fixture
def provider_subprocess():
    """A real ``fediversity-provider serve`` process; asserts it exits 0 on EOF."""
    driver = SubprocessDriver()
    try:
        yield driver
    finally:
        assert driver.close() == 0, "the provider did not exit with status 0 on EOF"


# The test environments; each module's fixtures become the plugin's.
from .hosts import *  # noqa: E402,F401,F403
from .nixeval import *  # noqa: E402,F401,F403
from .nixos import *  # noqa: E402,F401,F403
