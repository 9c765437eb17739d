"""Every error a provider reports, in one hierarchy.

Callers act on the *kind* (retry a transient failure, recreate what is gone,
fix an input), and people act on the *message*.  So each error carries the
resource type it happened on, the input field at fault when there is one, and
a hint saying what to do.  Over the wire only the rendered message travels;
its ``kind`` word ("not found", "invalid input", ...) is stable, so a runner on
the other side of the protocol can map it back to the class
(:func:`from_message`).
"""

from __future__ import annotations

__all__ = [
    "ProviderError",
    "InvalidInput",
    "NeedsReplacement",
    "NotFound",
    "Conflict",
    "AccessDenied",
    "Transient",
    "Unreachable",
    "TimedOut",
    "ProtocolError",
    "PluginError",
    "ErrorResponse",
    "from_message",
]


class ProviderError(Exception):
    """Base of every error a provider reports on purpose.

    Anything else a provider raises is a bug, and is reported as one.
    """

    kind = "error"
    retryable = False
    #: The whole message as it came over the wire, when rebuilt from one.
    rendered: str | None = None

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.resource = resource
        self.field = field
        self.hint = hint

    def with_resource(self, resource: str) -> "ProviderError":
        """Fill in the resource label where the raiser did not know it."""
        if self.resource is None:
            self.resource = resource
        return self

    def __str__(self) -> str:
        if self.rendered is not None:
            return self.rendered
        head = [part for part in (self.resource, self.kind, self.field) if part]
        text = ": ".join(head + [self.message])
        if self.hint:
            text += f" ({self.hint})"
        return text


class InvalidInput(ProviderError):
    """The inputs are wrong; nothing was changed.  Fix them and retry."""

    kind = "invalid input"


class NeedsReplacement(InvalidInput):
    """The change asked for cannot be made in place."""

    kind = "needs replacement"


class NotFound(ProviderError):
    """What the resource names does not exist (any more)."""

    kind = "not found"


class Conflict(ProviderError):
    """Something already exists, or the world is in a state that forbids the change."""

    kind = "conflict"


class AccessDenied(ProviderError):
    """Credentials or host identity were refused; retrying will not help."""

    kind = "access denied"


class Transient(ProviderError):
    """A failure that may go away by itself: retry later."""

    kind = "temporary failure"
    retryable = True


class Unreachable(Transient):
    """The remote end could not be reached at all."""

    kind = "unreachable"


#: The environment variable that sets every request's deadline (see the engine).
TIMEOUT_ENV = "FEDIVERSITY_PROVIDERS_TIMEOUT"


class TimedOut(ProviderError):
    """The request's deadline (``FEDIVERSITY_PROVIDERS_TIMEOUT``) passed first.

    Not retryable within the request: there is no time left.  The message
    says what was under way, because remote work may go on without us.
    """

    kind = "timed out"

    @classmethod
    def deadline_passed(cls, what: str, consequence: str, *, field: str | None = None) -> "TimedOut":
        """The error for ``what`` cut short by the request's deadline, saying what that left (``consequence``)."""
        return cls(f"{what}: the request's deadline ({TIMEOUT_ENV}) passed; {consequence}", field=field,
                   hint=f"raise {TIMEOUT_ENV} or unset it, then apply again")


class ProtocolError(ProviderError):
    """A message on the wire was not what the protocol allows."""

    kind = "protocol error"


class PluginError(ProviderError):
    """A plugin could not be loaded, or clashes with another one."""

    kind = "plugin error"


class ErrorResponse(ProviderError):
    """A provider on the other side of the protocol answered ``errorResponse``.

    Raised by the runner and the subprocess driver when the kind word in the
    message is unknown (another provider's error, say).
    """

    kind = ""

    def __str__(self) -> str:
        return self.message


_KINDS = {
    cls.kind: cls
    for cls in (
        InvalidInput,
        NeedsReplacement,
        NotFound,
        Conflict,
        AccessDenied,
        Transient,
        Unreachable,
        TimedOut,
        ProtocolError,
        PluginError,
    )
}


def from_message(message: str) -> ProviderError:
    """Rebuild a typed error from an ``errorResponse`` message.

    The message is kept whole, so a person sees exactly what the provider said.
    """
    for part in message.split(": ")[:3]:
        cls = _KINDS.get(part)
        if cls is not None:
            error = cls(message)
            error.rendered = message
            return error
    return ErrorResponse(message)
