"""Answer one protocol request: find the type, check inputs, call it, check outputs.

This is everything between a decoded request and its response, with no I/O
of its own, so the stdio server and the in-process test driver share it.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any

from . import messages as m
from . import redact, schema
from .errors import InvalidInput, ProviderError
from .plugins import Registry
from .resource import Context, Resource, ResourceType

__all__ = ["Engine", "DEBUG_ENV", "TIMEOUT_ENV"]

DEBUG_ENV = "FEDIVERSITY_PROVIDERS_DEBUG"
TIMEOUT_ENV = "FEDIVERSITY_PROVIDERS_TIMEOUT"
log = logging.getLogger("fediversity_providers")

_VERBS = {
    m.CreateResourceRequest: "creating",
    m.UpdateResourceRequest: "updating",
    m.ReadResourceRequest: "reading",
    m.DeleteResourceRequest: "deleting",
    m.StateResourceReadRequest: "reading the state of",
    m.StateResourceEvent: "recording a state event of",
}


class Engine:
    """Turns request objects into response objects; never raises for a bad request."""

    def __init__(self, registry: Registry | None = None, *, debug: bool | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        self.debug = bool(os.environ.get(DEBUG_ENV)) if debug is None else debug

    def handle(self, request: object) -> object:
        """The response to ``request``: the method's answer, or an ``ErrorResponse``."""
        try:
            return self._dispatch(request)
        except ProviderError as error:
            type_name = _type_name(request)
            if type_name and self.registry.types.get(type_name) is not None:
                error.with_resource(type_name)
            return m.ErrorResponse(redact.scrub(str(error)))
        except Exception as error:  # a bug in a plugin: say so, keep serving
            return m.ErrorResponse(redact.scrub(self._describe_bug(request, error)))

    def _describe_bug(self, request: object, error: Exception) -> str:
        type_name = _type_name(request)
        plugin = "?"
        registration = self.registry.types.get(type_name) if type_name else None
        if registration is not None:
            plugin = f"{registration.plugin} ({registration.distribution or 'not installed'})"
        if self.debug:
            log.error("%s", redact.scrub("".join(traceback.format_exception(error))))
            where = "the traceback is on stderr"
        else:
            where = f"set {DEBUG_ENV}=1 or run 'serve --debug' to log the traceback"
        return (
            f"{type_name or 'provider'}: internal error while {_VERBS.get(type(request), 'handling')} "
            f"the resource: {type(error).__name__}: {error} (a bug in plugin {plugin}; {where})"
        )

    def _context(self, type_name: str, stateful: bool = True) -> Context:
        timeout = os.environ.get(TIMEOUT_ENV)
        deadline = time.monotonic() + float(timeout) if timeout else None
        return Context(type_name=type_name, stateful=stateful, deadline=deadline)

    def _inputs(self, rtype: ResourceType, inputs: dict[str, Any], root: str) -> dict[str, Any]:
        schema.validate(inputs, rtype.input_schema, root=root, resource=rtype.name)
        filled = schema.with_defaults(inputs, rtype.input_schema)
        schema.register_sensitive(filled, rtype.input_schema)
        return filled

    def _resource(self, rtype: ResourceType, state: m.ResourceState) -> Resource:
        # Recorded inputs were valid when recorded; fill defaults so that old
        # and new inputs compare like for like, but do not refuse them.
        inputs = schema.with_defaults(state.input_properties, rtype.input_schema)
        schema.register_sensitive(inputs, rtype.input_schema)
        if state.output_properties is not None:
            schema.register_sensitive(state.output_properties, rtype.output_schema)
        return Resource(type=state.type, inputs=inputs, outputs=state.output_properties)

    def _outputs(self, rtype: ResourceType, outputs: Any) -> dict[str, Any]:
        if outputs is None:
            outputs = {}
        elif not isinstance(outputs, dict):
            from .messages import converter

            outputs = converter.unstructure(outputs)
        schema.register_sensitive(outputs, rtype.output_schema)
        try:
            schema.validate(outputs, rtype.output_schema, root="outputProperties", resource=rtype.name)
        except InvalidInput as error:
            raise ProviderError(
                f"the provider returned outputs that do not match its own schema: {error.message}",
                resource=rtype.name,
                hint="this is a bug in the plugin; report it with these details",
            ) from None
        return outputs

    def _structured(self, rtype: ResourceType, inputs: dict[str, Any]) -> Any:
        if rtype.inputs_class is None:
            return inputs
        from .messages import converter

        return converter.structure(inputs, rtype.inputs_class)

    def _dispatch(self, request: object) -> object:
        if isinstance(request, m.CreateResourceRequest):
            rtype = self.registry.get(request.type)
            if rtype.requires_state and not request.is_stateful:
                raise InvalidInput(
                    "this resource type needs its outputs persisted, but the request says isStateful: false",
                    resource=rtype.name,
                    field="isStateful",
                    hint="give the resource a state (NixOps4: requireState) before creating it",
                )
            inputs = self._inputs(rtype, request.input_properties, "inputProperties")
            ctx = self._context(rtype.name, request.is_stateful)
            outputs = rtype.create(self._structured(rtype, inputs), ctx)
            return m.CreateResourceResponse(self._outputs(rtype, outputs))

        if isinstance(request, m.UpdateResourceRequest):
            rtype = self._type_of(request.resource)
            previous = self._resource(rtype, request.resource)
            inputs = self._inputs(rtype, request.input_properties, "inputProperties")
            schema.check_replacements(previous.inputs, inputs, rtype.input_schema, resource=rtype.name)
            outputs = rtype.update(previous, self._structured(rtype, inputs), self._context(rtype.name))
            return m.UpdateResourceResponse(self._outputs(rtype, outputs))

        if isinstance(request, m.ReadResourceRequest):
            rtype = self._type_of(request.resource)
            outputs = rtype.read(self._resource(rtype, request.resource), self._context(rtype.name))
            return m.ReadResourceResponse(self._outputs(rtype, outputs))

        if isinstance(request, m.DeleteResourceRequest):
            rtype = self._type_of(request.resource)
            rtype.delete(self._resource(rtype, request.resource), self._context(rtype.name))
            return m.DeleteResourceResponse()

        if isinstance(request, (m.StateResourceReadRequest, m.StateResourceEvent)):
            rtype = self._type_of(request.resource)
            if not rtype.is_state_store:
                raise InvalidInput(
                    "this resource type is not a state store, so it answers no state requests",
                    resource=rtype.name,
                    hint="send state requests to a resource whose type stores NixOps4 state",
                )
            resource = self._resource(rtype, request.resource)
            ctx = self._context(rtype.name)
            if isinstance(request, m.StateResourceReadRequest):
                return m.StateResourceReadResponse(rtype.state_read(resource, ctx) or {})
            rtype.state_event(resource, request.event, request.nixops_version, request.patch, ctx)
            return m.StateResourceEventResponse()

        raise TypeError(f"not a request: {request!r}")

    def _type_of(self, state: m.ResourceState) -> ResourceType:
        return self.registry.get(state.type)


def _type_name(request: object) -> str | None:
    if isinstance(request, m.CreateResourceRequest):
        return request.type
    resource = getattr(request, "resource", None)
    return getattr(resource, "type", None)
