"""Connect to the machine with fabric, strictly, and gather its facts.

One attempt: TCP connect, SSH banner, key exchange and login all within
``connectTimeout``; the host key must be the pinned one (no known_hosts, no
trust-on-first-use: paramiko rejects any other key before authenticating, so
no command ever runs on an impostor); login only with the given key file (no
agent, no password or keyboard-interactive).  Transient failures are retried
(core's one retry helper) while ``retryTimeout`` lasts, within the request's deadline.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

import fabric
import invoke
import paramiko

from fediversity_providers import Context, ProtocolError, ProviderError, TimedOut, Unreachable
from fediversity_providers.core.retry import retry
from fediversity_providers.core.untrusted import printable

from . import facts, keys
from .errors import classify

# paramiko logs handshake failures with tracebacks; we report them ourselves.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

__all__ = ["observe"]


def observe(inputs: dict, ctx: Context) -> dict:
    """Connect (retrying transient failures), gather facts, check ``expect``; the outputs."""
    ssh, pinned, pkey = keys.checked_login(inputs["ssh"], ctx)

    found = retry(lambda: _attempt(ssh, pinned, pkey, ctx), window=inputs.get("retryTimeout", 0),
                  deadline=ctx.deadline, what=f"connecting to {ssh['host']}:{ssh['port']}",
                  log=lambda line: ctx.progress("retrying", line), fill_window=True)
    outputs = facts.parse(found)
    outputs["ssh"] = ssh
    facts.check_expect(outputs, inputs.get("expect") or {})
    return outputs


def _run_capped(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int, str, str]:
    """(status, stdout, stderr) of ``command``, reading at most :data:`facts.MAX_ANSWER_BYTES` of each.

    A machine is not trusted to answer a few hundred bytes of facts: past the
    cap the channel is closed and the answer refused, so a hostile or broken
    machine cannot make the provider hold gigabytes.
    """
    channel = client.get_transport().open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        give_up = time.monotonic() + timeout
        while True:
            while channel.recv_ready() and len(out) <= facts.MAX_ANSWER_BYTES:
                out += channel.recv(65536)
            while channel.recv_stderr_ready() and len(err) <= facts.MAX_ANSWER_BYTES:
                err += channel.recv_stderr(65536)
            if len(out) > facts.MAX_ANSWER_BYTES or len(err) > facts.MAX_ANSWER_BYTES:
                raise ProtocolError(
                    f"the machine answered the facts command with more than {facts.MAX_ANSWER_BYTES} bytes; "
                    "nothing more was read",
                    field="ssh.host", hint="check the machine: its shell or profile prints too much, or it is "
                    "not the machine you meant")
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            left = give_up - time.monotonic()
            if left <= 0:  # the machine went silent mid-command
                raise invoke.CommandTimedOut(None, timeout)
            select.select([channel], [], [], min(left, 0.5))
        status = channel.recv_exit_status()
        return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    finally:
        channel.close()


def _attempt(ssh: dict, pinned, pkey, ctx: Context) -> str:
    """One attempt, bounded by the request's deadline as well as by ``connectTimeout``."""
    host, port = ssh["host"], ssh["port"]
    left = ctx.remaining()
    if left is None or left >= ssh["connectTimeout"]:
        return _attempt_within(ssh, pinned, pkey, ssh["connectTimeout"])
    late = TimedOut.deadline_passed(f"connecting to {host}:{port}", "nothing was run on the machine",
                                    field="ssh.host")
    if left <= 0.05:
        raise late
    try:
        return _attempt_within(ssh, pinned, pkey, left)
    except ProviderError:
        if (ctx.remaining() or 0) <= 0.1:
            raise late from None
        raise


def _attempt_within(ssh: dict, pinned, pkey, timeout: float) -> str:
    host, port = ssh["host"], ssh["port"]
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise classify(error, ssh, pinned, "connecting") from None
    # The whole attempt (banner, key exchange, login, facts) ends by ``deadline``:
    # a watchdog shuts the socket then, which ends whatever paramiko waits for.
    # Each phase's own timeout alone would let a slow server take several times
    # connectTimeout (or the request's deadline).
    phase, expired = ["connecting"], threading.Event()

    def expire() -> None:
        expired.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # Half a second after the phases' own limits, so that theirs (a silent
    # server, a slow handshake) are the errors reported when they apply.
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()) + 0.5, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        return _converse(sock, ssh, pinned, pkey, timeout, deadline, phase)
    except ProviderError:
        if expired.is_set():
            raise Unreachable(
                f"{host}:{port} stopped answering while {phase[0]}: connecting, logging in and gathering the "
                f"facts took longer than {timeout:g}s", field="ssh.host",
                hint="check the machine and the network; raise ssh.connectTimeout (and the request's deadline)",
            ) from None
        raise
    finally:
        watchdog.cancel()
        sock.close()


def _converse(sock: socket.socket, ssh: dict, pinned, pkey, timeout: float, deadline: float,
              phase: list[str]) -> str:
    """Log in on ``sock`` and gather the facts; ProviderError for every failure."""
    host, port = ssh["host"], ssh["port"]
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
            "auth_timeout": max(0.1, deadline - time.monotonic()),
            "channel_timeout": max(0.1, deadline - time.monotonic()),
        },
    )
    client = conn.client
    keys.pin(client, ssh, pinned)
    try:
        try:
            conn.open()
        except Exception as error:
            raise classify(error, ssh, pinned, "connecting") from None
        phase[0] = "gathering facts"
        try:
            status, stdout, stderr = _run_capped(conn.client, facts.COMMAND, max(0.1, deadline - time.monotonic()))
        except ProviderError:
            raise
        except Exception as error:
            raise classify(error, ssh, pinned, "gathering facts") from None
        if status != 0:
            raise ProviderError(
                f"gathering facts on {host} failed with status {status}: {printable(stderr.strip()[-500:])}",
                field="ssh.host", hint="the login shell of the user must run POSIX sh commands",
            )
        return stdout
    finally:
        conn.close()

