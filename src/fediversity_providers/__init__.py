"""NixOps4 resource providers for Fediversity, and the core to write more.

The public surface is what this module exports; everything else is private.
Importing it stays cheap: provider start-up is NixOps4's hot path.
"""

from fediversity_providers.core.errors import (
    AccessDenied,
    Conflict,
    ErrorResponse,
    InvalidInput,
    NeedsReplacement,
    NotFound,
    PluginError,
    ProtocolError,
    ProviderError,
    TimedOut,
    Transient,
    Unreachable,
)
from fediversity_providers.core.hookspecs import hookimpl, hookspec
from fediversity_providers.core.resource import Context, Resource, ResourceType, load_schema

__all__ = [
    "AccessDenied",
    "Conflict",
    "Context",
    "ErrorResponse",
    "InvalidInput",
    "NeedsReplacement",
    "NotFound",
    "PluginError",
    "ProtocolError",
    "ProviderError",
    "Resource",
    "ResourceType",
    "TimedOut",
    "Transient",
    "Unreachable",
    "hookimpl",
    "hookspec",
    "load_schema",
]
