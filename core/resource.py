"""The contract a resource type fulfils, and what the core hands it.

A plugin subclasses :class:`ResourceType` and registers an instance.  The core
validates inputs against ``input_schema`` (filling in defaults) before any
method runs, checks the outputs against ``output_schema`` after, and turns
:class:`~fediversity_providers.core.errors.ProviderError` into an
``errorResponse`` that names the resource.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from . import logs, redact

if TYPE_CHECKING:
    import logging

__all__ = ["ResourceType", "Resource", "Context", "load_schema"]


class Resource(NamedTuple):
    """A resource as NixOps4 last recorded it: its type, inputs and outputs.

    A named tuple rather than an attrs class: it is built on every request,
    and this module is on the provider's start-up path.
    """

    type: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The document ``schemas/<name>.json`` shipped with this package."""
    # Package data read through the package's loader, as pkgutil.get_data
    # does, without importing pkgutil or importlib.resources (pathlib,
    # tempfile, zipfile): this runs on every provider process's first request.
    from fediversity_providers import schemas

    path = os.path.join(os.path.dirname(schemas.__file__), f"{name}.json")
    return json.loads(schemas.__spec__.loader.get_data(path))


class Context:
    """What a resource type may use while it serves one request.

    ``stateful`` is NixOps4's ``isStateful`` (false: outputs are not persisted).
    ``deadline`` is a :func:`time.monotonic` instant, or None for no limit.
    """

    def __init__(self, type_name: str, stateful: bool = True, deadline: float | None = None) -> None:
        self.type_name = type_name
        self.stateful = stateful
        self.deadline = deadline

    @property
    def logger(self) -> "logging.Logger":
        """A standard logger named after the type, for code that wants one.

        ``log`` and ``progress`` do not need it: they write their line directly.
        """
        import logging

        return logging.getLogger(f"fediversity_providers.{self.type_name}")

    def __repr__(self) -> str:
        return f"Context(type_name={self.type_name!r}, stateful={self.stateful!r}, deadline={self.deadline!r})"

    def log(self, message: str, *args: Any) -> None:
        """A line on stderr, which NixOps4 shows to the user (``%``-style ``args``)."""
        logs.emit(self.type_name, message % args if args else message)

    def progress(self, phase: str, message: str = "") -> None:
        """One line per phase of long work, so a person sees where it is."""
        logs.emit(self.type_name, f"{phase}: {message}" if message else phase)

    def waiting(self, what: str, limit: float | None = None, interval: float | None = None):
        """A context manager that writes a heartbeat line every few seconds while it lasts.

        ``with ctx.waiting("task UPID:…", limit=900): poll()`` — say what is
        awaited and the limit; the core writes how long it has been so far.
        """
        from .heartbeat import DEFAULT_INTERVAL, Heartbeat

        return Heartbeat(lambda line: self.progress("waiting", line), what, limit=limit,
                         interval=DEFAULT_INTERVAL if interval is None else interval)

    def add_secret(self, value: object) -> None:
        """Mask ``value`` in every log line and error from now on."""
        redact.add_secret(value)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


class ResourceType:
    """Base class of every resource type.

    Subclasses set ``name`` (the protocol's ``type``) and either the two
    schemas as dicts, or ship ``schemas/<name>.json`` (built-in types) holding
    ``{"description", "inputs", "outputs"}``.  ``inputs_class`` and
    ``outputs_class`` (attrs classes) are optional: with them, methods receive
    an instance instead of a dict, and may return one.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: NixOps4's ``requireState``: refuse to create when outputs won't be kept.
    requires_state: ClassVar[bool] = False
    #: Whether this type answers NixOps4's state requests (a state store).
    is_state_store: ClassVar[bool] = False
    #: Whether the old and the new resource can exist at once while one replaces
    #: the other (an ``x-replace-on-change`` input changed, and the user set
    #: ``allowReplacement``): then the core creates the new one before it deletes
    #: the old one; otherwise it deletes the old one first.  See core/replacement.
    replacement_can_coexist: ClassVar[bool] = False
    inputs_class: ClassVar[type | None] = None
    outputs_class: ClassVar[type | None] = None

    @functools.cached_property
    def _schema_document(self) -> dict[str, Any]:
        return load_schema(self.name)

    @property
    def input_schema(self) -> dict[str, Any]:
        return self._schema_document["inputs"]

    @property
    def output_schema(self) -> dict[str, Any]:
        return self._schema_document["outputs"]

    @property
    def wire_input_schema(self) -> dict[str, Any]:
        """The inputs NixOps4 sends: ``input_schema`` plus the core's own (``allowReplacement``).

        Requests are validated against it and the Nix module is generated from
        it; the plugin's methods never see the core's inputs.
        """
        from .replacement import wire_schema

        return wire_schema(self.input_schema, self.replacement_can_coexist)

    @property
    def summary(self) -> str:
        """One-line description, from the class or the schema document."""
        if self.description:
            return self.description
        try:
            return self._schema_document.get("description", "")
        except (FileNotFoundError, ModuleNotFoundError):
            return ""

    def create(self, inputs: Any, ctx: Context) -> Any:
        raise NotImplementedError(f"{self.name} does not implement create")

    def read(self, resource: Resource, ctx: Context) -> Any:
        """Default: the recorded outputs, for types that cannot observe the world."""
        return resource.outputs or {}

    def update(self, resource: Resource, inputs: Any, ctx: Context) -> Any:
        """Default: converge by creating again with the new inputs."""
        return self.create(inputs, ctx)

    def delete(self, resource: Resource, ctx: Context) -> None:
        """Default: nothing to remove."""
        return None

    def state_read(self, resource: Resource, ctx: Context) -> Any:
        raise NotImplementedError(f"{self.name} is not a state store")

    def state_event(
        self, resource: Resource, event: str, nixops_version: str | None, patch: Any, ctx: Context
    ) -> None:
        raise NotImplementedError(f"{self.name} is not a state store")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

