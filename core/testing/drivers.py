"""Drive a provider from a test: in this process, or as a real subprocess.

Both drivers have the same methods and raise the core's error classes, so a
test (and the conformance suite) runs unchanged against either.  The
in-process one is fast and debuggable; the subprocess one proves the wire.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

from fediversity_providers.core import messages as m
from fediversity_providers.core import requestline, wire
from fediversity_providers.core.client import ProviderProcess
from fediversity_providers.core.engine import Engine
from fediversity_providers.core.errors import PluginError, ProtocolError, from_message
from fediversity_providers.core.plugins import Registry

__all__ = ["Driver", "InProcessDriver", "SubprocessDriver"]


class Driver:
    """The operations of the protocol as methods; subclasses say how a request travels."""

    def request(self, request: object) -> object:
        raise NotImplementedError

    def send(self, message: dict) -> dict:
        """A raw wire value in, the raw response value out."""
        raise NotImplementedError

    def create(self, type_name: str, inputs: dict, *, stateful: bool = True) -> dict:
        return self.request(m.CreateResourceRequest(type_name, inputs, stateful)).output_properties

    def read(self, type_name: str, inputs: dict, outputs: dict | None) -> dict:
        return self.request(m.ReadResourceRequest(m.ResourceState(type_name, inputs, outputs))).output_properties

    def update(self, type_name: str, previous_inputs: dict, previous_outputs: dict | None, inputs: dict) -> dict:
        previous = m.ResourceState(type_name, previous_inputs, previous_outputs)
        return self.request(m.UpdateResourceRequest(previous, inputs)).output_properties

    def delete(self, type_name: str, inputs: dict, outputs: dict | None) -> None:
        self.request(m.DeleteResourceRequest(m.ResourceState(type_name, inputs, outputs)))

    def input_schema(self, type_name: str) -> dict:
        """The type's input schema as NixOps4 sends inputs (the core's own inputs included)."""
        return Registry().get(type_name).wire_input_schema

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InProcessDriver(Driver):
    """Requests go through the same engine ``serve`` uses, without a process.

    ``plugins`` are registered besides the installed entry points (pass
    ``entry_points=False`` to serve only them): plugin modules, objects with
    hookimpls, ``ResourceType`` instances or classes.  Every check runs at
    once, JSON Schema validity included: a problem in one of ``plugins``
    raises :class:`PluginError` here, listing each; a broken installed plugin
    only breaks its own types, as under ``serve``.
    """

    def __init__(self, plugins: Iterable[object] = (), *, entry_points: bool = True, debug: bool = True) -> None:
        registry = Registry(plugins, entry_points=entry_points)
        failures = [f for f in registry.check(full=True) if f.plugin in registry.extra_plugin_names]
        if failures:
            raise PluginError("; ".join(f.message() for f in failures),
                              hint="fix these plugins; 'fediversity-provider plugins --check' checks installed ones")
        self.engine = Engine(registry, debug=debug)

    def input_schema(self, type_name: str) -> dict:
        return self.engine.registry.get(type_name).wire_input_schema

    def request(self, request: object) -> object:
        # Through the wire format both ways, so what passes here passes there.
        response = m.decode(self.send(json.loads(m.encode(request))))
        if isinstance(response, m.ErrorResponse):
            raise from_message(response.message)
        return response

    def send(self, message: dict) -> dict:
        try:
            kind, body = requestline.parse_request(json.dumps(message))
            response = self.engine.handle(kind, body)
        except ProtocolError as error:
            response = "errorResponse", {"message": str(error)}
        return json.loads(wire.encode(*response))


class SubprocessDriver(Driver):
    """A real provider process (this suite's ``serve`` by default), kept for many requests."""

    def __init__(self, argv: Sequence[str] | None = None, *, env: dict[str, str] | None = None) -> None:
        self.process = ProviderProcess(argv, env=env)

    def request(self, request: object) -> object:
        return self.process.request(request)

    def send(self, message: dict) -> dict:
        return self.process.send(message)

    def send_line(self, line: bytes) -> bytes:
        return self.process.send_line(line)

    def close(self) -> int:
        return self.process.close()
