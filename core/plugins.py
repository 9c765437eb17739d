"""The plugin registry: which resource types exist and who provides them.

Plugins are found through the entry-point group ``fediversity_providers``.
The built-in providers are registered through that same group, exactly like
external ones.  ``FEDIVERSITY_PROVIDERS_PLUGINS`` (comma-separated entry-point
or distribution names; empty for none) limits which *external* plugins load.

A broken plugin breaks only itself: one that fails to import or to register,
a type that fails its checks (core/plugincheck) and a type name two plugins
claim are recorded as :class:`Failure` s.  Every other type is served; a
request for a broken one gets an error naming the plugin and what to fix.
"""

from __future__ import annotations

import os
import types as _types
from typing import Iterable, NamedTuple

import pluggy

from . import hookspecs, plugincheck
from .entrypoints import EntryPoint, discover
from .errors import InvalidInput, PluginError
from .resource import ResourceType

__all__ = ["Registry", "Registration", "Failure", "BUILTIN_DISTRIBUTION", "ONLY_PLUGINS_ENV", "plugin_label"]

BUILTIN_DISTRIBUTION = "fediversity-providers"
ONLY_PLUGINS_ENV = "FEDIVERSITY_PROVIDERS_PLUGINS"


def plugin_label(plugin: str, distribution: str | None) -> str:
    """``plugin 'greeting' (greeting-plugin)``: how errors name a plugin."""
    return f"plugin {plugin!r} ({distribution or 'not installed'})"


class Registration(NamedTuple):
    """One resource type, and the plugin and distribution it came from."""

    resource_type: ResourceType
    plugin: str
    distribution: str | None

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


class Failure(NamedTuple):
    """A plugin, or some of its types, that cannot be served, and why."""

    plugin: str
    distribution: str | None
    types: tuple[str, ...]
    problems: tuple[str, ...]

    def message(self) -> str:
        what = f"resource type {', '.join(map(repr, self.types))} of " if self.types else ""
        return f"{what}{plugin_label(self.plugin, self.distribution)} is broken: " + "; ".join(self.problems)


def _wanted(ep: EntryPoint) -> bool:
    if ep.distribution == BUILTIN_DISTRIBUTION:
        return True
    only = os.environ.get(ONLY_PLUGINS_ENV)
    if only is None:
        return True
    names = {name.strip() for name in only.split(",") if name.strip()}
    return ep.name in names or ep.distribution in names


def _warn_unknown_selection(eps: list[EntryPoint]) -> None:
    """One stderr line for each name in the selection that matches no installed plugin (a typo loads nothing)."""
    only = os.environ.get(ONLY_PLUGINS_ENV)
    if not only:
        return
    external = [ep for ep in eps if ep.distribution != BUILTIN_DISTRIBUTION]
    known = {ep.name for ep in external} | {ep.distribution for ep in external if ep.distribution}
    for name in sorted({n.strip() for n in only.split(",") if n.strip()} - known):
        import difflib

        from .logs import emit

        close = difflib.get_close_matches(name, sorted(known), n=1)
        emit("plugins", f"{ONLY_PLUGINS_ENV} names {name!r}, which is no installed plugin or distribution"
             + (f" (did you mean {close[0]!r}?)" if close else "")
             + f"; installed: {', '.join(sorted(known)) or 'none'}", level="warning")


class _OneType:
    """A plugin made of one ResourceType instance (what tests pass most often)."""

    def __init__(self, resource_type: ResourceType) -> None:
        self.resource_type = resource_type

    @hookspecs.hookimpl
    def register_resource_types(self, register) -> None:
        register(self.resource_type)


def _as_plugin(obj: object) -> tuple[object, str]:
    """A plugin object for pluggy, and its name by module or class, never by id()."""
    if isinstance(obj, type) and issubclass(obj, ResourceType):
        obj = obj()
    if isinstance(obj, ResourceType):
        cls = type(obj)
        return _OneType(obj), f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(obj, _types.ModuleType):
        return obj, obj.__name__
    cls = obj if isinstance(obj, type) else type(obj)
    return obj, f"{cls.__module__}.{cls.__qualname__}"


class Registry:
    """Resource types by name, loaded on first use.

    ``plugins`` are extra plugins registered besides the entry points: plugin
    modules, objects with hookimpls, ``ResourceType`` instances or
    subclasses.  Tests and scripts use them to serve a type without
    installing a distribution.
    """

    def __init__(self, plugins: Iterable[object] = (), *, entry_points: bool = True) -> None:
        self._extra = list(plugins)
        self._use_entry_points = entry_points
        self._types: dict[str, Registration] | None = None
        self._failures: list[Failure] = []
        self._broken: dict[str, Failure] = {}
        self._checked: set[str] = set()
        self._refused: list[Registration] = []  # types refused at registration, for check() to look into
        self.extra_plugin_names: set[str] = set()
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)

    @property
    def types(self) -> dict[str, Registration]:
        """The types that can be served (broken ones are in :attr:`failures`)."""
        if self._types is None:
            self._types = self._load()
        return self._types

    @property
    def failures(self) -> list[Failure]:
        self.types
        return list(self._failures)

    def get(self, name: str) -> ResourceType:
        """The type called ``name``, or an error naming why it cannot be served."""
        registration = self.types.get(name)
        if name not in self._checked and registration is not None:
            self._check(name, full=False)
            registration = self.types.get(name)
        if registration is not None:
            return registration.resource_type
        failure = self._broken.get(name)
        if failure is not None:
            raise PluginError(failure.message(), resource=name, hint=_FIX_HINT)
        known = ", ".join(sorted(self.types)) or "none"
        unloaded = [f for f in self._failures if not f.types]
        if unloaded:
            raise PluginError(
                f"unknown resource type {name!r}; this provider knows: {known}; and "
                + "; ".join(f.message() for f in unloaded)
                + ", so it may be the one that provides this type",
                resource=name,
                hint=_FIX_HINT,
            )
        import difflib

        close = difflib.get_close_matches(str(name), list(self.types), n=1)
        hint = "check the type name, or install the plugin that provides it"
        if os.environ.get(ONLY_PLUGINS_ENV) is not None:
            hint = (f"check the type name; {ONLY_PLUGINS_ENV}={os.environ[ONLY_PLUGINS_ENV]!r} loads only the "
                    "plugins it names: add the one that provides it, or install it")
        raise InvalidInput(
            f"unknown resource type {name!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; this provider knows: {known}",
            field="type",
            hint=hint,
        )

    def check(self, *, full: bool = True) -> list[Failure]:
        """Run every check on every type now; all failures, loading ones included.

        ``full`` adds the JSON Schema metaschema check (imports jsonschema).
        """
        for name in sorted(self.types):
            self._check(name, full=full)
        refused, self._refused = self._refused, []
        for registration in refused:  # their schemas too, so that one run lists every problem
            rtype = registration.resource_type
            problems = plugincheck.schema_problems(rtype)
            if full:
                problems += plugincheck.metaschema_problems(rtype)
            if problems:
                name = getattr(rtype, "name", None)
                self._failures.append(Failure(registration.plugin, registration.distribution,
                                              (name,) if isinstance(name, str) else (), tuple(problems)))
        return self.failures

    def _check(self, name: str, *, full: bool) -> None:
        registration = self.types[name]
        rtype = registration.resource_type
        self._checked.add(name)
        problems = plugincheck.schema_problems(rtype)
        if full or (not problems and not self._quick_validator_covers(rtype)):
            problems += plugincheck.metaschema_problems(rtype)  # every problem, for plugins --check
        if problems:
            self._fail(registration.plugin, registration.distribution, (name,), problems)

    @staticmethod
    def _quick_validator_covers(rtype: ResourceType) -> bool:
        """When the quick validator cannot vouch for a schema, jsonschema is loaded for it anyway."""
        from . import schema

        try:
            return all(schema._quick_check(s) is not None for s in (rtype.input_schema, rtype.output_schema))
        except Exception:  # a schema the quick validator chokes on
            return False

    def _fail(self, plugin: str, distribution: str | None, names: tuple[str, ...], problems: list[str]) -> None:
        failure = Failure(plugin, distribution, names, tuple(problems))
        self._failures.append(failure)
        for name in names:
            self._broken[name] = failure
            if self._types is not None:
                self._types.pop(name, None)

    def _register_plugin(self, plugin: object, name: str, origin: tuple[str, str | None],
                         origins: dict[str, tuple[str, str | None]]) -> None:
        if self.manager.is_registered(plugin):
            return
        unique, n = name, 1
        while self.manager.get_plugin(unique) is not None:
            n += 1
            unique = f"{name}#{n}"
        try:
            self.manager.register(plugin, name=unique)
        except Exception as exc:  # pluggy refuses a malformed hookimpl
            self._fail(*origin, (), [f"cannot be registered: {type(exc).__name__}: {exc}"])
            return
        if not self.manager.get_hookcallers(plugin):
            self._fail(*origin, (), ["has no register_resource_types hook: mark a function "
                                     "register_resource_types(register) with @hookimpl"])
        origins[unique] = origin

    def _load(self) -> dict[str, Registration]:
        origins: dict[str, tuple[str, str | None]] = {}
        if self._use_entry_points:
            found_eps = list(discover(hookspecs.PROJECT))
            _warn_unknown_selection(found_eps)
            for ep in found_eps:
                if not _wanted(ep):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken plugin must say who it is
                    self._fail(ep.name, ep.distribution, (), [
                        f"cannot be imported ({ep.value}): {type(exc).__name__}: {exc}; reinstall or remove it"])
                    continue
                self._register_plugin(plugin, f"{ep.distribution}:{ep.name}", (ep.name, ep.distribution), origins)
        for obj in self._extra:
            plugin, name = _as_plugin(obj)
            self.extra_plugin_names.add(name)
            self._register_plugin(plugin, name, (name, None), origins)

        found: dict[str, Registration] = {}
        claims: dict[str, list[tuple[str, str | None]]] = {}
        for impl in self.manager.hook.register_resource_types.get_hookimpls():
            plugin_name, distribution = origins.get(impl.plugin_name, (impl.plugin_name, None))
            mine: dict[str, Registration] = {}
            problems: list[str] = []
            broken_names: set[str] = set()

            def register(resource_type: ResourceType, _p=plugin_name, _d=distribution,
                         _mine=mine, _problems=problems, _broken=broken_names) -> None:
                found_problems = plugincheck.registration_problems(resource_type)
                name = getattr(resource_type, "name", None)
                if found_problems:
                    _problems.extend(found_problems)
                    if isinstance(name, str):
                        _broken.add(name)
                    if isinstance(resource_type, ResourceType):
                        self._refused.append(Registration(resource_type, _p, _d))
                    return
                if name in _mine:
                    _problems.append(f"registers the type {name!r} twice: register each type once")
                    _broken.add(name)
                    return
                _mine[name] = Registration(resource_type, _p, _d)

            try:
                impl.function(register=register)
            except Exception as exc:
                self._fail(plugin_name, distribution, tuple(sorted(mine)), [
                    f"its register_resource_types raised {type(exc).__name__}: {exc}"])
                continue
            if problems:
                self._fail(plugin_name, distribution, tuple(sorted(broken_names)), problems)
            for name in broken_names:
                mine.pop(name, None)
            for name, registration in mine.items():
                claims.setdefault(name, []).append((plugin_name, distribution))
                found.setdefault(name, registration)
        for name, claimants in claims.items():
            if len(claimants) > 1:
                found.pop(name)
                first, second = claimants[0], claimants[1]
                failure = Failure(first[0], first[1], (name,), (
                    f"resource type {name!r} is provided twice: by {plugin_label(*first)} and by "
                    f"{plugin_label(*second)}; uninstall one, or limit plugins with {ONLY_PLUGINS_ENV}",))
                self._failures.append(failure)
                self._broken[name] = failure
        return found


_FIX_HINT = (
    "fix or reinstall that plugin; 'fediversity-provider plugins --check' lists every problem; nothing was changed"
)
