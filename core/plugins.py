"""The plugin registry: which resource types exist and who provides them.

Plugins are found through the entry-point group ``fediversity_providers``.
The built-in providers are registered through that same group, exactly like
external ones.  ``FEDIVERSITY_PROVIDERS_PLUGINS`` (comma-separated entry-point
or distribution names; empty for none) limits which *external* plugins load.
"""

from __future__ import annotations

import os
from typing import Iterable, NamedTuple

import pluggy

from . import hookspecs
from .entrypoints import EntryPoint, discover
from .errors import InvalidInput, PluginError
from .resource import ResourceType

__all__ = ["Registry", "Registration", "BUILTIN_DISTRIBUTION", "ONLY_PLUGINS_ENV"]

BUILTIN_DISTRIBUTION = "fediversity-providers"
ONLY_PLUGINS_ENV = "FEDIVERSITY_PROVIDERS_PLUGINS"


class Registration(NamedTuple):
    """One resource type, and the plugin and distribution it came from."""

    resource_type: ResourceType
    plugin: str
    distribution: str | None

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


def _wanted(ep: EntryPoint) -> bool:
    if ep.distribution == BUILTIN_DISTRIBUTION:
        return True
    only = os.environ.get(ONLY_PLUGINS_ENV)
    if only is None:
        return True
    names = {name.strip() for name in only.split(",") if name.strip()}
    return ep.name in names or ep.distribution in names


class Registry:
    """Resource types by name, loaded on first use.

    ``plugins`` are extra plugin objects (modules or instances with hookimpls)
    registered besides the entry points; tests and scripts use them to serve
    a type without installing a distribution.
    """

    def __init__(self, plugins: Iterable[object] = (), *, entry_points: bool = True) -> None:
        self._extra = list(plugins)
        self._use_entry_points = entry_points
        self._types: dict[str, Registration] | None = None
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)

    @property
    def types(self) -> dict[str, Registration]:
        if self._types is None:
            self._types = self._load()
        return self._types

    def get(self, name: str) -> ResourceType:
        """The type called ``name``, or an error listing the known ones."""
        registration = self.types.get(name)
        if registration is None:
            known = ", ".join(sorted(self.types)) or "none"
            raise InvalidInput(
                f"unknown resource type {name!r}; this provider knows: {known}",
                field="type",
                hint="check the type name, or install the plugin that provides it",
            )
        return registration.resource_type

    def _load(self) -> dict[str, Registration]:
        origins: dict[str, tuple[str, str | None]] = {}
        if self._use_entry_points:
            for ep in discover(hookspecs.PROJECT):
                if not _wanted(ep):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken plugin must say who it is
                    raise PluginError(
                        f"cannot load plugin {ep.name!r} ({ep.value}) from {ep.distribution}: {exc}",
                        hint="reinstall or remove that distribution",
                    ) from exc
                if self.manager.is_registered(plugin):
                    continue
                self.manager.register(plugin, name=f"{ep.distribution}:{ep.name}")
                origins[self.manager.get_name(plugin)] = (ep.name, ep.distribution)
        for plugin in self._extra:
            if not self.manager.is_registered(plugin):
                self.manager.register(plugin)
            name = self.manager.get_name(plugin)
            origins.setdefault(name, (name, None))

        found: dict[str, Registration] = {}
        for impl in self.manager.hook.register_resource_types.get_hookimpls():
            plugin_name, distribution = origins.get(impl.plugin_name, (impl.plugin_name, None))

            def register(resource_type: ResourceType, _p=plugin_name, _d=distribution) -> None:
                if not isinstance(resource_type, ResourceType):
                    raise PluginError(
                        f"plugin {_p!r} registered {resource_type!r}, which is not a ResourceType instance"
                    )
                previous = found.get(resource_type.name)
                if previous is not None:
                    raise PluginError(
                        f"resource type {resource_type.name!r} is provided twice: by plugin "
                        f"{previous.plugin!r} ({previous.distribution or 'not installed'}) and by plugin "
                        f"{_p!r} ({_d or 'not installed'})",
                        hint=f"uninstall one, or limit plugins with {ONLY_PLUGINS_ENV}",
                    )
                found[resource_type.name] = Registration(resource_type, _p, _d)

            impl.function(register=register)
        return found
