"""``fediversity-provider``: serve the protocol, run single operations, introspect.

The runner commands mirror ``nixops4-resource-runner`` at NixOps4 53d8554
(flags, short flags, required-ness, duplicate inputs, success lines; see
``tests/reference/nixops4/runner-flags.json``): they spawn a provider (this
suite's ``serve`` unless ``--provider-exe`` names another), write exactly one
request line and read one answer, as NixOps4 does.  Outputs go to stdout as
JSON; errors to stderr.  Exit status 1: the request failed or a flag's value
is wrong; 2: the command line cannot be parsed.
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
#: Runner commands and flags upstream's nixops4-resource-runner does not have.
_OURS = " [this project's addition]"

#: Exit statuses, as the README states them.
EXIT_FAILED = 1  # the request failed, or a flag's value is wrong (as upstream's runner)
EXIT_USAGE = 2  # the command line itself cannot be parsed (as argparse and upstream's clap)

_ENVIRONMENT = """\
environment variables:
  FEDIVERSITY_PROVIDERS_PLUGINS     comma-separated plugin names: only these external plugins load (empty: none)
  FEDIVERSITY_PROVIDERS_DEBUG=1     log tracebacks of plugin bugs to stderr (as serve --debug)
  FEDIVERSITY_PROVIDERS_TIMEOUT     seconds a request may take (ctx.deadline)
  FEDIVERSITY_PROVIDERS_NO_CACHE=1  scan installed distributions for plugins on every start
  FEDIVERSITY_PROVIDERS_MAX_LINE_BYTES   longest request line serve reads (default 16 MiB)
  FEDIVERSITY_PROVIDERS_CLEANUP_SECONDS  clean-up time after SIGTERM/SIGINT (default 10)
  FEDIVERSITY_PROVIDERS_FILE_ROOTS  colon-separated directories: the only places input-named files are read from

exit status: 0 success; 1 the request failed or a flag's value is wrong; 2 the command line cannot be parsed
"""

_DESCRIPTIONS = {
    "create": "Create a resource: send createResourceRequest and print its outputs as JSON.",
    "read": "Read a resource as it is now: send readResourceRequest with the recorded inputs and outputs, "
            "print the outputs as JSON." + _OURS,
    "update": "Update a resource: send updateResourceRequest with the previous inputs and outputs, "
              "print the new outputs as JSON.",
    "delete": "Delete a resource: send deleteResourceRequest (NixOps4 never does; for removing what a "
              "deployment no longer names)." + _OURS,
    "state-read": "Read the state document from a state store resource and print it as JSON.",
    "state-event": "Send one state event (a JSON Patch) to a state store resource.",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fediversity-providers")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> "argparse.ArgumentParser":
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # noqa: D401 - argparse's hook
            self.print_usage(sys.stderr)
            self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{_suggestion(message, self)}\n")

    parser = Parser(
        prog="fediversity-provider",
        description="NixOps4 resource providers for Fediversity: serve the protocol, run one operation, or introspect.",
        epilog=_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # as nixops4-resource-runner: a flag is spelled out
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    common = {"epilog": _ENVIRONMENT, "formatter_class": argparse.RawDescriptionHelpFormatter, "allow_abbrev": False}

    serve = sub.add_parser("serve", help="speak NixOps4's resource protocol on stdin/stdout (what NixOps4 runs)",
                           description="Answer NixOps4's resource protocol v0 on stdin/stdout, one JSON line per "
                                       "request; logs go to stderr.", **common)
    serve.add_argument("--debug", action="store_true", help="log debug lines and tracebacks of plugin bugs to stderr")

    for name in _RUNNER_COMMANDS:
        summary = _DESCRIPTIONS[name].split(":")[0]
        runner = sub.add_parser(name, help=(summary[0].lower() + summary[1:]).rstrip("."),
                                description=_DESCRIPTIONS[name] + " Flags as nixops4-resource-runner's.", **common)
        runner.add_argument("--provider-exe", metavar="PATH",
                            help="the executable that implements the resource operations "
                                 "(default: this suite's own serve)")
        runner.add_argument("--provider-args-json", metavar="JSON", default=None,
                            help="arguments for --provider-exe, as a JSON array of strings" + _OURS)
        runner.add_argument("--type", required=True, metavar="TYPE",
                            help="the resource type: an identifier the provider recognises, e.g. proxmox_vm")
        inputs_help = {
            "create": "the (whole) input properties as one JSON object",
            "update": "the new input properties as one JSON object",
        }.get(name, "the input properties recorded for the resource, as one JSON object")
        runner.add_argument("--inputs-json", metavar="JSON", help=inputs_help + " (default: {}); every JSON flag "
                            "also takes @FILE or @- (standard input), so that no secret shows in `ps`")
        runner.add_argument("-j", "--input-json", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                            help="one input property, in JSON (repeatable; a name given twice is an error)")
        runner.add_argument("-s", "--input-str", nargs=2, action="append", default=[], metavar=("NAME", "STR"),
                            help="one input property, as a raw string (repeatable; a name given twice is an error)")
        if name == "create":
            runner.add_argument("--stateful", action="store_true",
                                help="whether state persistence will be provided to the resource (isStateful)")
        if name == "update":
            runner.add_argument("--previous-inputs-json", required=True, metavar="JSON",
                                help="the previous input properties, as recorded in the state")
            runner.add_argument("--previous-outputs-json", required=True, metavar="JSON",
                                help="the previous output properties, as recorded in the state")
        if name in ("read", "state-read", "state-event"):
            runner.add_argument("--outputs-json", required=True, metavar="JSON",
                                help="the output properties recorded for the resource")
        if name == "delete":
            runner.add_argument("--outputs-json", metavar="JSON",
                                help="the output properties recorded for the resource (default: {})")
        if name == "state-event":
            runner.add_argument("--event", required=True, metavar="EVENT",
                                help="the operation that produced this change, e.g. create")
            runner.add_argument("--nixops-version", default=f"fediversity-providers {_version()}", metavar="VERSION",
                                help="the version of NixOps that produced this event (sent as nixopsVersion; "
                                     "default: this project's name and version)")
            runner.add_argument("--patch-json", required=True, metavar="JSON",
                                help="the JSON Patch (RFC 6902) operations to apply to the state, a JSON array")
        runner.add_argument("--timeout", metavar="SECONDS", default=None,
                            help="stop the provider and fail if it has not answered within SECONDS" + _OURS)

    types = sub.add_parser("types", help="list the resource types this provider serves",
                           description="List the resource types served, with requireState.", **common)
    types.add_argument("--json", action="store_true", help="print JSON instead of a table")
    schema = sub.add_parser("schema", help="print a type's input and output JSON Schemas",
                            description="Print a resource type's input and output JSON Schemas.", **common)
    schema.add_argument("type", metavar="TYPE", help="the resource type, e.g. garage_bucket")
    plugins = sub.add_parser("plugins", help="which plugin provides which types, from which distribution",
                             description="Which plugin provides which types, from which distribution, "
                                         "and what failed to load.", **common)
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument("--check", action="store_true",
                         help="run every check on every plugin (JSON Schema validity too); list each problem; "
                              "exit 1 if there is any")
    sub.add_parser("nix-module", help="print the NixOps4 provider module generated from the schemas",
                   description="Print the NixOps4 provider module (Nix) generated from the types' schemas.", **common)
    return parser


def _suggestion(message: str, parser: "argparse.ArgumentParser") -> str:
    """' (did you mean …?)' for a mistyped command or flag, else ''."""
    import difflib
    import re

    found = re.search(r"invalid choice: '([^']*)'", message)
    if found:
        choices = [c for c in _RUNNER_COMMANDS + ("serve", "types", "schema", "plugins", "nix-module")]
        close = difflib.get_close_matches(found[1], choices, n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""
    parsers = [parser] + [p for a in parser._actions if a.dest == "command" for p in a.choices.values()]
    flags = sorted({flag for p in parsers for action in p._actions for flag in action.option_strings})
    found = re.search(r"unrecognized arguments: (--?[\w-]+)", message)
    typed = [found[1]] if found else []
    if "required" in message:  # a mistyped required flag is reported as missing: look at what was typed
        typed = [a.split("=")[0] for a in _RAW_ARGS if a.startswith("--") and a.split("=")[0] not in flags]
    for flag in typed:
        close = difflib.get_close_matches(flag.split("=")[0], flags, n=1)
        if close:
            return f" (did you mean {close[0]!r} for {flag!r}?)" if not found else f" (did you mean {close[0]!r}?)"
    return ""


#: The command line being parsed, for suggestions in usage errors.
_RAW_ARGS: list[str] = []


class _BadFlag(Exception):
    """A flag's value is wrong: exit status 1, as upstream's runner."""


def _json_flag(flag: str, text: str | None, *, want: type | None = dict, default: Any = None) -> Any:
    from .errors import ProtocolError
    from .wire import parse_line

    if text is None:
        return default
    if text.startswith("@"):  # @FILE or @- (stdin): a secret in the inputs then never shows in `ps`
        where = text[1:]
        try:
            if where == "-":
                text = sys.stdin.read()
            else:
                with open(where, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise _BadFlag(f"cannot read the value of {flag} from {where!r}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        text = text.strip()
    try:
        value = parse_line(text, what="the value")
    except ProtocolError as exc:
        raise _BadFlag(f"failed to parse value of {flag}: {exc.message}") from None
    if want is not None and not isinstance(value, want):
        raise _BadFlag(f"{flag} must be a JSON {'object' if want is dict else 'array'}, got: {text[:80]!r}")
    return value


def _gather_inputs(args: "argparse.Namespace") -> dict:
    inputs = dict(_json_flag("--inputs-json", args.inputs_json, default={}))
    given: set[str] = set()
    for key, text in args.input_json:
        if key in inputs or key in given:
            raise _BadFlag(f"error: duplicate input: {key}")
        given.add(key)
        inputs[key] = _json_flag(f"--input-json {key}", text, want=None)
    for key, text in args.input_str:
        if key in inputs:
            raise _BadFlag(f"error: duplicate input: {key}")
        inputs[key] = text
    return inputs


def _build_request(args: "argparse.Namespace", inputs: dict) -> object:
    from . import messages as m

    if args.command == "create":
        return m.CreateResourceRequest(args.type, inputs, args.stateful)
    if args.command == "update":
        previous = m.ResourceState(args.type, _json_flag("--previous-inputs-json", args.previous_inputs_json),
                                   _json_flag("--previous-outputs-json", args.previous_outputs_json))
        return m.UpdateResourceRequest(previous, inputs)
    resource = m.ResourceState(args.type, inputs, _json_flag("--outputs-json", args.outputs_json, default={}))
    if args.command == "state-event":
        patch = _json_flag("--patch-json", args.patch_json, want=list)
        return m.StateResourceEvent(resource, args.event, patch, args.nixops_version)
    return {
        "read": m.ReadResourceRequest,
        "delete": m.DeleteResourceRequest,
        "state-read": m.StateResourceReadRequest,
    }[args.command](resource)


#: What a runner command prints when the request succeeded and has no outputs (upstream's words).
_SUCCESS_LINES = {"state-event": "State event sent successfully"}


def _run(args: "argparse.Namespace") -> int:
    from .client import ProviderProcess, response_payload
    from .engine import MAX_TIMEOUT_SECONDS
    from .errors import TimedOut
    from .errors import ProviderError

    argv = None
    try:
        if args.provider_exe:
            extra = _json_flag("--provider-args-json", args.provider_args_json, want=list, default=[])
            if not all(isinstance(a, str) for a in extra):
                raise _BadFlag("--provider-args-json must be a JSON array of strings")
            argv = [args.provider_exe, *extra]
        elif args.provider_args_json is not None:
            raise _BadFlag("--provider-args-json needs --provider-exe")
        if args.timeout is not None:
            try:
                args.timeout = float(args.timeout)
            except ValueError:
                args.timeout = float("nan")
            if not 0 < args.timeout <= MAX_TIMEOUT_SECONDS:  # nan and inf too
                raise _BadFlag(f"--timeout must be a number of seconds between 0 and {MAX_TIMEOUT_SECONDS}, "
                               f"got {args.timeout:g}")
        request = _build_request(args, _gather_inputs(args))
    except _BadFlag as error:
        print(f"fediversity-provider {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        with ProviderProcess(argv, timeout=args.timeout) as provider:
            response = provider.request(request)
            try:
                status = provider.close()
            except TimedOut as late:  # it answered, then did not exit: the answer stands
                print(f"fediversity-provider {args.command}: {late}", file=sys.stderr)
                status = None
    except ProviderError as error:
        print(f"fediversity-provider {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.command in _SUCCESS_LINES:
        print(_SUCCESS_LINES[args.command])
    else:
        print(json.dumps(response_payload(response), indent=2, sort_keys=True))
    if status is None:
        return EXIT_FAILED
    if status != 0:
        print(f"fediversity-provider {args.command}: the provider exited with status {status}", file=sys.stderr)
        return EXIT_FAILED
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
        _RAW_ARGS[:] = argv
        args = parser.parse_args(argv)
    if args.command == "serve":
        from .engine import Engine
        from .logs import configure_on_import
        from .server import claim_stdio, serve

        # Claim stdio before anything imports plugin code.
        protocol_in, protocol_out = claim_stdio()
        configure_on_import(args.debug)
        return serve(Engine(debug=args.debug or None), protocol_in=protocol_in, protocol_out=protocol_out)
    try:
        if args.command in _RUNNER_COMMANDS:
            return _run(args)
        return _introspect(args)
    except BrokenPipeError:
        # Whoever read stdout is gone (`| head`): nothing more to say, and no traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
