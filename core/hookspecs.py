"""The hooks a plugin implements."""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "fediversity_providers"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_resource_types(register: Callable[..., None]) -> None:
    """Call ``register(resource_type_instance)`` once for each type the plugin provides."""
