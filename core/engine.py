"""Answer one protocol request: find the type, check inputs, call it, check outputs.

This is everything between a decoded request and its response, with no I/O
of its own, so the stdio server and the in-process test driver share it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import answers, logs, nulls, redact, replacement, schema
from .errors import TIMEOUT_ENV, InvalidInput, ProviderError
from .interrupt import NO_GUARD
from .plugins import Registry
from .resource import Context, Resource, ResourceType

__all__ = ["Engine", "DEBUG_ENV", "TIMEOUT_ENV"]

DEBUG_ENV = "FEDIVERSITY_PROVIDERS_DEBUG"

#: The longest deadline one may set (a year): beyond it, timers and timeouts overflow.
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600

_VERBS = {
    "createResourceRequest": "creating",
    "updateResourceRequest": "updating",
    "readResourceRequest": "reading",
    "deleteResourceRequest": "deleting",
    "destroyResourceRequest": "deleting",
    "stateResourceReadRequest": "reading the state of",
    "stateResourceEvent": "recording a state event of",
}


class Engine:
    """Turns a request's ``(kind, body)`` into the response's; never raises for a bad request.

    It works on the wire's plain JSON (checked by :mod:`wire`), not on the
    attrs classes of :mod:`messages`, to keep attrs and cattrs off the
    provider's start-up path.
    """

    def __init__(self, registry: Registry | None = None, *, debug: bool | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        self.debug = bool(os.environ.get(DEBUG_ENV)) if debug is None else debug
        #: Entered around every plugin method call; ``serve`` makes it the region
        #: where a signal may interrupt (core/interrupt).
        self.plugin_guard = NO_GUARD

    def handle(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The response to a well-formed request: the method's answer, or an ``errorResponse``."""
        try:
            return self._dispatch(kind, body)
        except ProviderError as error:
            type_name = _type_name(body)
            if type_name and self.registry.types.get(type_name) is not None:
                error.with_resource(type_name)
            return "errorResponse", {"message": redact.scrub(str(error))}
        except Exception as error:  # a bug in a plugin: say so, keep serving
            return "errorResponse", {"message": redact.scrub(self._describe_bug(kind, body, error))}

    def _describe_bug(self, kind: str, body: dict[str, Any], error: Exception) -> str:
        type_name = _type_name(body)
        plugin = "?"
        registration = self.registry.types.get(type_name) if type_name else None
        if registration is not None:
            plugin = f"{registration.plugin} ({registration.distribution or 'not installed'})"
        if self.debug:
            import traceback

            logs.emit("provider", "".join(traceback.format_exception(error)).rstrip(), level="error")
            where = "the traceback is on stderr"
        else:
            where = f"set {DEBUG_ENV}=1 or run 'serve --debug' to log the traceback"
        return (
            f"{type_name or 'provider'}: internal error while {_VERBS.get(kind, 'handling')} "
            f"the resource: {type(error).__name__}: {error} (a bug in plugin {plugin}; {where})"
        )

    def _context(self, type_name: str, stateful: bool = True) -> Context:
        raw = os.environ.get(TIMEOUT_ENV)
        deadline = None
        if raw:
            try:
                seconds = float(raw)
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= MAX_TIMEOUT_SECONDS:  # also refuses nan and inf
                raise InvalidInput(
                    f"the environment variable {TIMEOUT_ENV}={raw!r} is not a positive number of seconds "
                    f"(at most {MAX_TIMEOUT_SECONDS})",
                    resource=type_name,
                    hint=f"unset {TIMEOUT_ENV}, or set it to seconds, e.g. 600",
                )
            deadline = time.monotonic() + seconds
        return Context(type_name=type_name, stateful=stateful, deadline=deadline)

    def _inputs(self, rtype: ResourceType, inputs: dict[str, Any], root: str) -> tuple[dict[str, Any], bool]:
        """Checked inputs with defaults, for the plugin; and whether the user allows replacement.

        ``null`` where the schema admits no ``null`` is absent (core/nulls).
        Secrets are registered before validation, so an error cannot quote one.
        """
        wired = rtype.wire_input_schema
        inputs = nulls.drop_nulls(inputs, wired)
        schema.register_sensitive(inputs, wired)
        schema.validate(inputs, wired, root=root, resource=rtype.name)
        filled = schema.with_defaults(inputs, wired)
        schema.register_sensitive(filled, wired)
        return replacement.split_core_inputs(filled, rtype.input_schema)

    def _resource(self, rtype: ResourceType, state: dict[str, Any]) -> Resource:
        # Recorded inputs were valid when recorded; fill defaults so that old
        # and new inputs compare like for like, but do not refuse them.
        wired = rtype.wire_input_schema
        inputs = schema.with_defaults(nulls.drop_nulls(state["inputProperties"], wired), wired)
        schema.register_sensitive(inputs, wired)
        inputs, _ = replacement.split_core_inputs(inputs, rtype.input_schema)
        outputs = state.get("outputProperties")
        if outputs is not None:
            schema.register_sensitive(outputs, rtype.output_schema)
        return Resource(type=state["type"], inputs=inputs, outputs=outputs)

    def _outputs(self, rtype: ResourceType, outputs: Any, kind: str) -> dict[str, Any]:
        if outputs is None:
            outputs = {}
        elif not isinstance(outputs, dict):
            from .messages import converter

            outputs = converter.unstructure(outputs)
        schema.register_sensitive(outputs, rtype.output_schema)
        answers.check_writable(outputs, "outputProperties", resource=rtype.name, kind=kind)
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

    def _replace(
        self, rtype: ResourceType, previous: Resource, inputs: dict[str, Any], changed: list, allowed: bool
    ) -> dict[str, Any]:
        """An update that must replace the resource: create and delete, in the order the type allows."""
        if not allowed:
            raise replacement.refuse(changed, rtype.name)
        ctx = self._context(rtype.name)

        def create() -> dict[str, Any]:
            with self.plugin_guard:
                made = rtype.create(self._structured(rtype, inputs), ctx)
            return self._outputs(rtype, made, "updateResourceResponse")

        def delete_new(outputs: dict[str, Any]) -> None:
            with self.plugin_guard:
                rtype.delete(Resource(type=rtype.name, inputs=inputs, outputs=outputs), ctx)

        def delete_old() -> None:
            with self.plugin_guard:
                rtype.delete(previous, ctx)

        return replacement.replace(
            rtype.name, rtype.replacement_can_coexist,
            create=create, delete_old=delete_old, delete_new=delete_new,
            new_inputs=inputs, changed=changed, progress=ctx.progress,
        )

    def _dispatch(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if kind == "createResourceRequest":
            rtype = self.registry.get(body["type"])
            stateless = rtype.requires_state and not body["isStateful"]
            state_problem = "this resource type needs its outputs persisted, but the request says isStateful: false"
            state_hint = "give the resource a state (NixOps4: requireState; the runner: --stateful)"
            try:
                inputs, _ = self._inputs(rtype, body["inputProperties"], "inputProperties")
            except InvalidInput as error:
                if stateless:  # one answer names every problem, the missing state too
                    error.message += f"; and isStateful: {state_problem}"
                    error.hint = f"{error.hint}; and {state_hint}" if error.hint else state_hint
                raise
            if stateless:
                raise InvalidInput(state_problem, resource=rtype.name, field="isStateful",
                                   hint=state_hint + " before creating it")
            ctx = self._context(rtype.name, body["isStateful"])
            with self.plugin_guard:
                outputs = rtype.create(self._structured(rtype, inputs), ctx)
            kind = "createResourceResponse"
            return kind, {"outputProperties": self._outputs(rtype, outputs, kind)}

        rtype = self.registry.get(body["resource"]["type"])
        previous = self._resource(rtype, body["resource"])
        if kind == "updateResourceRequest":
            inputs, allowed = self._inputs(rtype, body["inputProperties"], "inputProperties")
            changed = replacement.changed_fields(previous.inputs, inputs, rtype.input_schema)
            kind = "updateResourceResponse"
            if changed:
                return kind, {"outputProperties": self._replace(rtype, previous, inputs, changed, allowed)}
            with self.plugin_guard:
                outputs = rtype.update(previous, self._structured(rtype, inputs), self._context(rtype.name))
            return kind, {"outputProperties": self._outputs(rtype, outputs, kind)}
        if kind == "readResourceRequest":
            with self.plugin_guard:
                outputs = rtype.read(previous, self._context(rtype.name))
            return "readResourceResponse", {"outputProperties": self._outputs(rtype, outputs, "readResourceResponse")}
        if kind in ("deleteResourceRequest", "destroyResourceRequest"):
            with self.plugin_guard:
                rtype.delete(previous, self._context(rtype.name))
            return kind.replace("Request", "Response"), {}
        if not rtype.is_state_store:
            raise InvalidInput(
                "this resource type is not a state store, so it answers no state requests",
                resource=rtype.name,
                hint="send state requests to a resource whose type stores NixOps4 state",
            )
        if kind == "stateResourceReadRequest":
            with self.plugin_guard:
                state = rtype.state_read(previous, self._context(rtype.name)) or {}
            answers.check_writable(state, "state", resource=rtype.name, kind="stateResourceReadResponse")
            return "stateResourceReadResponse", {"state": state}
        if kind == "stateResourceEvent":
            if not isinstance(body["patch"], list):
                raise InvalidInput(
                    "patch must be an RFC 6902 JSON Patch array, as NixOps4 sends it; nothing was recorded",
                    resource=rtype.name, field="patch",
                    hint='send e.g. [{"op": "add", "path": "/resources/x", "value": {...}}]',
                )
            with self.plugin_guard:
                rtype.state_event(
                    previous, body["event"], body.get("nixopsVersion"), body["patch"], self._context(rtype.name)
                )
            return "stateResourceEventResponse", {}
        raise ValueError(f"not a request kind: {kind!r}")


def _type_name(body: dict[str, Any]) -> str | None:
    if "type" in body:
        return body["type"]
    resource = body.get("resource")
    return resource.get("type") if isinstance(resource, dict) else None
