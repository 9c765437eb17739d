"""What nixos_config does for each request: copy, activate, confirm, observe.

Imported by the resource type's methods only (it starts subprocesses and
threads); the package's ``__init__`` stays light for cold start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from typing import Any

from fediversity_providers.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ProviderError,
    Transient,
    Unreachable,
)
from fediversity_providers.core.resource import Context

from . import keys as keyfiles
from .remote import SCRIPT
from .ssh import Target

DEFAULT_PROFILE = "/nix/var/nix/profiles/system"
RECORD_DIR = "/var/lib/fediversity-providers/nixos_config"
NIX_FLAGS = ["--extra-experimental-features", "nix-command"]


def record_path(profile: str) -> str:
    """Where the deployment record for ``profile`` lives on the target."""
    digest = hashlib.sha256(profile.encode()).hexdigest()[:16]
    return f"{RECORD_DIR}/{os.path.basename(profile) or 'profile'}-{digest}"


def _target(inputs: dict, ctx: Context) -> Target:
    ssh = inputs["ssh"]
    host = ssh["host"]
    return Target(ssh, sudo=inputs.get("sudo"), log=lambda line: ctx.log("%s: %s", host, line),
                  deadline=ctx.deadline)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _outputs(values: dict[str, str]) -> dict[str, Any]:
    return {
        "toplevel": values.get("active") or None,
        "generation": _int_or_none(values.get("generation")),
        "previousToplevel": values.get("previous") or None,
    }


# -- local checks and copying ---------------------------------------------------
def _local(argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def check_local_path(path: str, build_on_target: bool) -> list[str]:
    """The closure of ``path`` in the local store; InvalidInput when it is not there."""
    for tool, package in (("nix", "Nix"), ("nix-store", "Nix"), ("ssh", "the OpenSSH client")):
        if shutil.which(tool) is None:
            raise ProviderError(f"{tool!r} is not on the provider's PATH",
                                hint=f"install {package} where the provider runs (it deploys with nix copy over ssh)")
    if path.endswith(".drv") and not build_on_target:
        raise InvalidInput(
            f"{path} is a derivation, not a built system",
            field="toplevel",
            hint="build it first (nix-build / nix build), or set buildOnTarget = true to build it on the machine",
        )
    proc = _local(["nix-store", "--query", "--requisites", path])
    if proc.returncode != 0 or not os.path.exists(path):
        raise InvalidInput(
            f"{path} is not a valid path in the local Nix store: {proc.stderr.strip() or 'it does not exist'}",
            field="toplevel",
            hint="build the system first, e.g. nix-build '<nixpkgs/nixos>' -A system, and pass its out path",
        )
    return proc.stdout.split()


def copy_closure(target: Target, path: str, paths: list[str], inputs: dict, ctx: Context) -> None:
    """``nix copy --to ssh-ng://`` with our ssh options; ssh's own error on failure."""
    ctx.progress("copying", f"{len(paths)} path{'' if len(paths) == 1 else 's'} to {target.label}")
    argv = ["nix", *NIX_FLAGS, "copy", "--no-check-sigs", "--to", target.store_uri()]
    if inputs.get("substituteOnDestination", True):
        argv.append("--substitute-on-destination")
    if path.endswith(".drv"):
        argv.append("--derivation")
    argv.append(path)
    started = time.monotonic()
    left = target.time_left("copying the closure", "nothing was copied or activated")
    try:
        proc = subprocess.run(argv, env=target.nix_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=left)
    except subprocess.TimeoutExpired:
        target.take_ssh_log()
        raise target.timed_out("copying the closure", "the copy was stopped and nothing was activated") from None
    diag = target.take_ssh_log()
    if proc.returncode != 0:
        nix_said = proc.stderr.strip().splitlines()[-3:]
        error = target.ssh_error("copying the closure", diag, during="") if diag else None
        if error is not None:
            error.message += f" (nix copy said: {' '.join(nix_said)}); nothing was activated"
            raise error
        raise Transient(
            f"copying {path} to {target.label} failed; nothing was activated. nix copy said: {' '.join(nix_said)}"
            + (f"; ssh said: {diag}" if diag else ""),
            hint="fix the cause above and apply again",
        )
    ctx.log("copied in %.1fs", time.monotonic() - started)


def realise_on_target(target: Target, drv: str, ctx: Context) -> str:
    """Build a copied derivation on the machine; its output path."""
    ctx.progress("building", f"{drv} on {target.label}")
    result = target.run('nix-store --realise "$1" </dev/null', [drv], what="building the system", relay=True)
    out = [line for line in result.stdout if line.startswith("/")]
    if result.status != 0 or not out:
        raise ProviderError(f"building {drv} on {target.label} failed:\n{result.tail()}",
                            field="toplevel", hint="fix the build, or build locally (buildOnTarget = false)")
    return out[-1]


# -- the operations -----------------------------------------------------------
def read(inputs: dict, recorded: dict | None, ctx: Context) -> dict[str, Any]:
    keys = keyfiles.parse(inputs)
    profile = inputs.get("profile") or DEFAULT_PROFILE
    with _target(inputs, ctx) as target:
        result = target.run(SCRIPT, ["state", profile, record_path(profile)],
                            timeout=target.connect_timeout * 3 + 10, what="reading the system state")
        if result.status != 0:
            raise ProviderError(f"reading the system state failed:\n{result.tail()}")
        values = result.values
        if values.get("record") != "1":
            raise NotFound(f"no deployment of profile {profile} is recorded on {inputs['ssh']['host']}",
                           hint="apply the configuration to deploy it")
        outputs = _outputs(values)
        outputs["keys"] = keyfiles.check(target, keys)  # compared on the machine: missing or changed is drift
    return outputs


def deploy(inputs: dict, ctx: Context, previous=None) -> dict[str, Any]:
    toplevel = inputs["toplevel"]
    action = inputs.get("action", "switch")
    profile = inputs.get("profile") or DEFAULT_PROFILE
    build_on_target = inputs.get("buildOnTarget", False)
    rollback = inputs.get("rollback") or {}
    on_failure = rollback.get("onFailure", True)
    magic = rollback.get("magic") or {}
    magic_timeout = int(magic.get("confirmTimeout", 30)) if magic.get("enable") and action in ("switch", "test") else 0

    keys = keyfiles.parse(inputs)  # every key checked and read before anything is copied
    paths = check_local_path(toplevel, build_on_target)
    with _target(inputs, ctx) as target:
        copy_closure(target, toplevel, paths, inputs, ctx)
        if toplevel.endswith(".drv"):
            toplevel = realise_on_target(target, toplevel, ctx)
        key_outputs: dict[str, Any] = {}
        waiting: list = []  # pre-activation keys whose owner the new system creates
        if action != "dry-activate":
            before, waiting = keyfiles.upload(target, [k for k in keys if k.upload_at == "pre-activation"], ctx,
                                              "pre-activation", owner_may_wait=True)
            key_outputs.update(before)
        token = uuid.uuid4().hex
        use_apply = "1" if profile == DEFAULT_PROFILE else "0"
        ctx.progress("activating", f"{action} {toplevel} on {target.label}"
                     + (f" (magic rollback after {magic_timeout}s)" if magic_timeout else ""))
        lost: ProviderError | None = None
        try:
            result = target.run(
                SCRIPT,
                ["deploy", action, toplevel, profile, record_path(profile), use_apply,
                 "1" if on_failure else "0", str(magic_timeout), token],
                what="activating", relay=True,
            )
        except Unreachable as error:
            if not magic_timeout:
                error.message += ("; the connection was lost during activation, which may or may not have "
                                  "finished: read the resource to see what the machine runs")
                raise
            lost, result = error, None
        switched_at = time.monotonic()
        if result is not None:
            values = result.values
            if "error" in values:
                raise InvalidInput(f"{target.label}: {values['error']}", field="toplevel",
                                   hint="pass config.system.build.toplevel of a NixOS configuration")
            status = _int_or_none(values.get("rc"))
            if status is None or status != 0:
                _activation_failed(target, toplevel, action, result, on_failure)
        if magic_timeout:
            _confirm(target, token, magic_timeout, switched_at, lost, ctx)
        if result is not None:
            values = result.values
        else:  # the activation's session was lost, but the machine confirmed: look again
            values = target.run(SCRIPT, ["state", profile, record_path(profile)], what="reading the system state",
                                fresh=True).values
        if action == "dry-activate":  # changes nothing: the keys as they are
            key_outputs = keyfiles.check(target, keys)
        else:
            key_outputs.update(keyfiles.give_to_owners(target, waiting, ctx))
            key_outputs.update(keyfiles.upload(target, [k for k in keys if k.upload_at == "post-activation"], ctx,
                                               "post-activation")[0])
            # keys dropped from the set (or moved): removed once the new system runs
            stale = keyfiles.paths_of(previous.inputs, previous.outputs) if previous is not None else set()
            keyfiles.remove(target, stale - {k.path for k in keys}, ctx)
    outputs = _outputs(values)
    outputs["keys"] = {name: key_outputs[name] for name in sorted(key_outputs)}
    ctx.progress("done", f"{target.label} runs {outputs['toplevel']} (generation {outputs['generation']})")
    return outputs


def _activation_failed(target: Target, toplevel: str, action: str, result, on_failure: bool) -> None:
    values = result.values
    rolled = values.get("rolled_back")
    if rolled == "0":
        what = f"it rolled back to {values.get('previous_active') or 'the state before'}"
    elif rolled is not None:
        what = "rolling back failed too; the machine needs attention"
    elif action == "dry-activate":
        what = "nothing was changed (dry-activate)"
    elif not on_failure:
        what = "it did not roll back (rollback.onFailure = false)"
    else:
        what = "the activation did not finish"
    raise Conflict(
        f"activating {toplevel} ({action}) on {target.label} failed with status {values.get('rc', result.status)}; "
        f"{what}. Last lines of the activation:\n{result.tail()}",
        field="toplevel",
        hint="fix the configuration and apply again",
    )


def _confirm(target: Target, token: str, timeout: int, switched_at: float, lost, ctx: Context) -> None:
    """Reach the machine over a fresh connection before its watchdog rolls back."""
    ctx.progress("confirming", f"reaching {target.label} again within {timeout}s")
    deadline = switched_at + timeout
    last: ProviderError | None = lost
    while time.monotonic() < deadline:
        try:
            result = target.run(SCRIPT, ["confirm", token], timeout=max(1.0, deadline - time.monotonic()),
                                what="confirming", fresh=True)
        except (Unreachable, Transient) as error:
            last = error
            time.sleep(0.2)
            continue
        state = result.values.get("confirm")
        if state == "confirmed":
            ctx.log("confirmed: the machine is reachable after the switch")
            return
        if state == "expired":
            break
        raise ProviderError(f"confirming on {target.label}: the watchdog is gone ({state}); "
                            "the machine may have rebooted", hint="check the machine and apply again")
    raise Unreachable(
        f"could not reach {target.label} again within {timeout}s after switching; its watchdog rolls it back to "
        f"the previous generation by itself (magic rollback)" + (f". Last error: {last.message}" if last else ""),
        field="ssh.host",
        hint="the new configuration probably broke the machine's network or SSH; fix it and apply again",
    )


def delete(inputs: dict, ctx: Context, outputs: dict | None = None) -> None:
    profile = inputs.get("profile") or DEFAULT_PROFILE
    on_delete = inputs.get("onDelete", "keep")
    with _target(inputs, ctx) as target:
        if on_delete == "rollback":
            ctx.progress("rolling back", f"{target.label} to the generation before the first deploy")
        result = target.run(SCRIPT, ["delete", profile, record_path(profile), on_delete],
                            what="deleting", relay=True)
        values = result.values
        if result.status != 0:
            raise ProviderError(f"deleting the deployment on {target.label} failed: "
                                f"{values.get('error', '')}\n{result.tail()}")
        if "rolled_back_to" in values:  # the system from before the first deploy did not have these keys
            keyfiles.remove(target, keyfiles.paths_of(inputs, outputs), ctx)
    if "rollback_skipped" in values:
        ctx.log("onDelete = rollback: the generation before the first deploy (%s) no longer exists; "
                "the machine stays on its current configuration", values["rollback_skipped"])
