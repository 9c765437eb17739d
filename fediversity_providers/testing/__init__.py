"""Test kit for plugin authors (public name of fediversity_providers.core.testing)."""
from fediversity_providers.core.testing import *  # noqa: F401,F403
from fediversity_providers.core.testing import __all__  # noqa: F401
