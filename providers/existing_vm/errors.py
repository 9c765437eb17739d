"""Turn what socket, paramiko and invoke raise into errors a person can act on."""

from __future__ import annotations

import errno
import socket

import invoke
import paramiko

from fediversity_providers import AccessDenied, ProviderError, Transient, Unreachable

from .keys import fingerprint

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINVAL, errno.EHOSTDOWN, errno.ETIMEDOUT}


def classify(error: BaseException, ssh: dict, pinned: paramiko.PKey, phase: str) -> ProviderError:
    host, port, timeout, user = ssh["host"], ssh["port"], ssh["connectTimeout"], ssh["user"]
    where = f"{host}:{port}"
    slow = "raise ssh.connectTimeout, or retryTimeout to wait for a machine that is still booting"

    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        error = next(iter(error.errors.values()))
    if isinstance(error, paramiko.BadHostKeyException):
        offered = error.key
        return AccessDenied(
            f"host key mismatch on {where}: expected {pinned.get_name()} {fingerprint(pinned.asbytes())}, "
            f"the host offered {offered.get_name()} {fingerprint(offered.asbytes())}; nothing was run there",
            field="ssh.hostPublicKey",
            hint="if the machine's key was changed on purpose, put its new public key in hostPublicKey (read it on "
            "the machine itself: /etc/ssh/ssh_host_ed25519_key.pub); otherwise do not deploy: another machine "
            "may be answering at this address",
        )
    if isinstance(error, paramiko.AuthenticationException) and "timeout" not in str(error).lower():
        key = ssh.get("privateKeyFile")
        with_key = f"key file {key}" if key else "the default keys (~/.ssh/id_ed25519, id_ecdsa, id_rsa)"
        return AccessDenied(
            f"{where} refused the login of user {user!r} with {with_key}",
            field="ssh.privateKeyFile" if key else "ssh.user",
            hint=f"authorize that key's public half in ~{user}/.ssh/authorized_keys on the machine, or fix ssh.user",
        )
    if isinstance(error, socket.gaierror):
        return Unreachable(f"cannot resolve host name {host!r}: {error.strerror}", field="ssh.host",
                           hint="check ssh.host and the name service")
    if isinstance(error, ConnectionRefusedError):
        return Transient(f"{where} refused the connection", field="ssh.port",
                         hint=f"check that sshd runs on the machine and listens on port {port}")
    if isinstance(error, (socket.timeout, TimeoutError)):
        return Unreachable(f"no answer from {where} within {timeout}s while {phase}", field="ssh.host",
                           hint=f"check that the machine is up and {host} is routed to it; {slow}")
    if isinstance(error, invoke.CommandTimedOut):
        return Unreachable(f"{where} stopped answering for {timeout}s while {phase}", field="ssh.host",
                           hint=f"check the machine and the network; {slow}")
    if isinstance(error, OSError) and error.errno in _UNREACHABLE:
        return Unreachable(f"cannot reach {where}: {error.strerror}", field="ssh.host",
                           hint="check the address and the routes to the machine")
    if isinstance(error, paramiko.SSHException) and "banner" in str(error).lower():
        return Transient(
            f"{where} accepted the TCP connection but sent no SSH banner within {timeout}s", field="ssh.port",
            hint=f"the SSH server is overloaded or something else listens on port {port}; {slow}",
        )
    if isinstance(error, paramiko.SSHException) and str(error) in ("No existing session", "Negotiation failed."):
        return Transient(f"the SSH handshake with {where} did not complete within {timeout}s", field="ssh.host",
                         hint=f"the SSH server or the network is overloaded; {slow}")
    if isinstance(error, (paramiko.SSHException, EOFError, ConnectionError, OSError)):
        detail = str(error) or type(error).__name__
        return Transient(f"the SSH connection to {where} failed while {phase}: {detail}", field="ssh.host",
                         hint="retry; if it persists, check sshd's log on the machine")
    return ProviderError(f"unexpected failure while {phase} on {where}: {type(error).__name__}: {error}",
                         field="ssh", hint="report this with the message above")
