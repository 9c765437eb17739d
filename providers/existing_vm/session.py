"""Connect to the machine with fabric, strictly, and gather its facts.

One attempt: TCP connect, SSH banner, key exchange and login all within
``connectTimeout``; the host key must be the pinned one (no known_hosts, no
trust-on-first-use: paramiko rejects any other key before authenticating, so
no command ever runs on an impostor); login only with the given key file (no
agent, no password or keyboard-interactive).  Transient failures are retried
with exponential backoff while ``retryTimeout`` lasts.
"""

from __future__ import annotations

import base64
import logging
import select
import socket
import time

import fabric
import paramiko

from fediversity_providers import Context, ProviderError

from . import facts, keys
from .errors import classify

# paramiko logs handshake failures with tracebacks; we report them ourselves.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

__all__ = ["observe"]

_FIRST_BACKOFF = 0.25
_MAX_BACKOFF = 5.0


def observe(inputs: dict, ctx: Context) -> dict:
    """Connect (retrying transient failures), gather facts, check ``expect``; the outputs."""
    ssh = dict(inputs["ssh"])
    kind, blob = keys.parse_host_key(ssh["hostPublicKey"])
    ssh["hostPublicKey"] = f"{kind} {base64.b64encode(blob).decode()}"  # without the comment
    pinned = keys.host_key_object(kind, blob)
    pkey = keys.load_private_key(ssh["privateKeyFile"], ctx) if ssh.get("privateKeyFile") else None

    give_up = time.monotonic() + inputs.get("retryTimeout", 0)
    remaining = ctx.remaining()
    if remaining is not None:
        give_up = min(give_up, time.monotonic() + remaining)
    backoff, attempt = _FIRST_BACKOFF, 1
    while True:
        try:
            found = _attempt(ssh, pinned, pkey)
            break
        except ProviderError as error:
            left = give_up - time.monotonic()
            if not error.retryable or left <= 0:
                if attempt > 1:
                    error.message += f" (after {attempt} attempts)"
                raise
            delay = min(backoff, left, _MAX_BACKOFF)
            ctx.progress("retrying", f"{error.message}; attempt {attempt + 1} in {delay:.2f}s")
            time.sleep(delay)
            backoff *= 2
            attempt += 1
    outputs = facts.parse(found)
    outputs["ssh"] = ssh
    facts.check_expect(outputs, inputs.get("expect") or {})
    return outputs


def _attempt(ssh: dict, pinned, pkey) -> str:
    host, port, timeout = ssh["host"], ssh["port"], ssh["connectTimeout"]
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise classify(error, ssh, pinned, "connecting") from None
    # An SSH server speaks first.  Waiting for that here, rather than in
    # paramiko's handshake, reports a silent server the same way every time.
    if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
        sock.close()
        raise classify(paramiko.SSHException("Error reading SSH protocol banner"), ssh, pinned, "connecting")
    conn = fabric.Connection(
        host,
        user=ssh["user"],
        port=port,
        # Neither ~/.ssh/config nor fabric's config files (which could add
        # keys or change host-key handling): only what the inputs say.
        config=fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig(), overrides={"load_ssh_configs": False}),
        # With our own socket this bounds only the key exchange; a little
        # longer than the banner timeout, so that a silent server is reported
        # as such (paramiko's start_client gives up silently at its timeout).
        connect_timeout=timeout + 0.5,
        connect_kwargs={
            "sock": sock,
            "pkey": pkey,
            "allow_agent": False,
            "look_for_keys": pkey is None,
            "banner_timeout": max(0.1, deadline - time.monotonic()),
            "auth_timeout": timeout,
            "channel_timeout": timeout,
        },
    )
    client = conn.client
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(host if port == 22 else f"[{host}]:{port}", pinned.get_name(), pinned)
    try:
        try:
            conn.open()
        except Exception as error:
            raise classify(error, ssh, pinned, "connecting") from None
        try:
            result = conn.run(facts.COMMAND, hide=True, warn=True, in_stream=False, timeout=timeout)
        except Exception as error:
            raise classify(error, ssh, pinned, "gathering facts") from None
        if result.exited != 0:
            raise ProviderError(
                f"gathering facts on {host} failed with status {result.exited}: {result.stderr.strip()[-500:]}",
                field="ssh.host", hint="the login shell of the user must run POSIX sh commands",
            )
        return result.stdout
    finally:
        conn.close()
        sock.close()

