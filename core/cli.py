"""``fediversity-provider``: serve the protocol, run single operations, introspect.

The runner commands mirror ``nixops4-resource-runner``: they spawn a provider
(this suite's ``serve`` unless ``--provider-exe`` names another) and speak the
real protocol to it.  Outputs go to stdout as JSON; errors to stderr, status 1.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # argparse is imported only when a command line is parsed
    import argparse

__all__ = ["main", "build_parser"]

_RUNNER_COMMANDS = ("create", "read", "update", "delete", "state-read", "state-event")


def _json_arg(text: str) -> Any:
    import argparse

    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None


def _json_object_arg(text: str) -> dict:
    import argparse

    value = _json_arg(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got: {text!r}")
    return value


def build_parser() -> "argparse.ArgumentParser":
    import argparse

    parser = argparse.ArgumentParser(
        prog="fediversity-provider",
        description="NixOps4 resource providers for Fediversity: serve the protocol, run one operation, or introspect.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="speak NixOps4's resource protocol on stdin/stdout (what NixOps4 runs)")
    serve.add_argument("--debug", action="store_true", help="log debug lines and tracebacks of plugin bugs to stderr")

    for name in _RUNNER_COMMANDS:
        runner = sub.add_parser(name, help=f"run one {name} request against a provider and print the result")
        runner.add_argument("--type", required=True, help="the resource type, e.g. proxmox_vm")
        runner.add_argument("--inputs-json", type=_json_object_arg, metavar="JSON",
                            help="all input properties as one JSON object (the recorded ones for read/delete)")
        runner.add_argument("--input-json", nargs=2, action="append", default=[], metavar=("KEY", "JSON"),
                            help="one input property as JSON (repeatable)")
        runner.add_argument("--input-str", nargs=2, action="append", default=[], metavar=("KEY", "STRING"),
                            help="one input property as a string (repeatable)")
        runner.add_argument("--provider-exe", metavar="PATH",
                            help="any NixOps4 provider executable (default: this suite's 'serve')")
        runner.add_argument("--provider-args-json", type=_json_arg, metavar="JSON", default=None,
                            help="arguments for --provider-exe, as a JSON array")
        if name == "create":
            runner.add_argument("--stateful", action="store_true",
                                help="tell the provider the outputs will be persisted (isStateful)")
        if name == "update":
            runner.add_argument("--previous-inputs-json", type=_json_object_arg, required=True, metavar="JSON")
            runner.add_argument("--previous-outputs-json", type=_json_object_arg, metavar="JSON")
        if name in ("read", "delete", "state-read", "state-event"):
            runner.add_argument("--outputs-json", type=_json_object_arg, metavar="JSON",
                                help="the outputs recorded when the resource was created")
        if name == "state-event":
            runner.add_argument("--event", required=True)
            runner.add_argument("--nixops-version", default=None,
                                help="sent as nixopsVersion (NixOps4 always sends it; upstream's schema requires it)")
            runner.add_argument("--patch-json", type=_json_arg, default=[], metavar="JSON",
                                help="an RFC 6902 JSON Patch")

    types = sub.add_parser("types", help="list the resource types this provider serves")
    types.add_argument("--json", action="store_true", help="print JSON instead of a table")
    schema = sub.add_parser("schema", help="print a type's input and output JSON Schemas")
    schema.add_argument("type")
    plugins = sub.add_parser("plugins", help="which plugin provides which types, from which distribution")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument("--check", action="store_true",
                         help="run every check on every plugin (JSON Schema validity too); list each problem; "
                              "exit 1 if there is any")
    sub.add_parser("nix-module", help="print the NixOps4 provider module generated from the schemas")
    return parser


def _gather_inputs(args: "argparse.Namespace", parser: "argparse.ArgumentParser") -> dict:
    inputs = dict(args.inputs_json or {})
    for key, text in args.input_json:
        try:
            inputs[key] = json.loads(text)
        except ValueError as exc:
            parser.error(f"--input-json {key}: not JSON ({exc})")
    for key, text in args.input_str:
        inputs[key] = text
    return inputs


def _build_request(args: "argparse.Namespace", inputs: dict) -> object:
    from . import messages as m

    if args.command == "create":
        return m.CreateResourceRequest(args.type, inputs, args.stateful)
    if args.command == "update":
        previous = m.ResourceState(args.type, args.previous_inputs_json, args.previous_outputs_json)
        return m.UpdateResourceRequest(previous, inputs)
    resource = m.ResourceState(args.type, inputs, args.outputs_json)
    if args.command == "state-event":
        return m.StateResourceEvent(resource, args.event, args.patch_json, args.nixops_version)
    return {
        "read": m.ReadResourceRequest,
        "delete": m.DeleteResourceRequest,
        "state-read": m.StateResourceReadRequest,
    }[args.command](resource)


def _run(args: "argparse.Namespace", parser: "argparse.ArgumentParser") -> int:
    from .client import ProviderProcess, response_payload
    from .errors import ProviderError

    argv = None
    if args.provider_exe:
        extra = args.provider_args_json or []
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            parser.error("--provider-args-json must be a JSON array of strings")
        argv = [args.provider_exe, *extra]
    request = _build_request(args, _gather_inputs(args, parser))
    try:
        with ProviderProcess(argv) as provider:
            response = provider.request(request)
            status = provider.close()
    except ProviderError as error:
        print(f"fediversity-provider {args.command}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(response_payload(response), indent=2, sort_keys=True))
    if status != 0:
        print(f"fediversity-provider {args.command}: the provider exited with status {status}", file=sys.stderr)
        return 1
    return 0


def _introspect(args: "argparse.Namespace") -> int:
    from . import introspect
    from .errors import ProviderError
    from .plugins import Registry

    try:
        registry = Registry()
        if args.command == "types":
            print(introspect.types_json(registry) if args.json else introspect.types_table(registry))
        elif args.command == "plugins" and args.check:
            report, clean = introspect.plugins_check(registry)
            print(report)
            return 0 if clean else 1
        elif args.command == "plugins":
            print(introspect.plugins_json(registry) if args.json else introspect.plugins_table(registry))
        elif args.command == "schema":
            print(introspect.schema_json(registry, args.type))
        else:
            from .nixmodule import render

            sys.stdout.write(render(registry))
    except ProviderError as error:
        print(f"fediversity-provider {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv in (["serve"], ["serve", "--debug"]):
        # NixOps4's hot path: a process per operation; skip building the parser.
        args = SimpleNamespace(command="serve", debug=argv == ["serve", "--debug"])
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
    if args.command == "serve":
        from .engine import Engine
        from .logs import configure_on_import
        from .server import claim_stdio, serve

        # Claim stdio before anything imports plugin code.
        protocol_in, protocol_out = claim_stdio()
        configure_on_import(args.debug)
        return serve(Engine(debug=args.debug or None), protocol_in=protocol_in, protocol_out=protocol_out)
    if args.command in _RUNNER_COMMANDS:
        return _run(args, parser)
    return _introspect(args)
