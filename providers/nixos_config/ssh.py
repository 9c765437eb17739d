"""Reaching the target: OpenSSH's own client, with the host key pinned.

Both the commands the provider runs and ``nix copy --to ssh-ng://`` go
through the same ``ssh`` binary and one generated ``ssh_config`` (passed as
``-F``, so neither the user's nor the system's ssh configuration applies):
the known_hosts file holds only ``ssh.hostPublicKey`` (under a host key alias,
so the port does not matter), ``StrictHostKeyChecking yes``, no password or
keyboard-interactive authentication, ``BatchMode``, ``ConnectTimeout``, and
keep-alives so that a machine that vanishes mid-session is noticed within
about ``connectTimeout`` seconds.  ssh writes its own diagnostics to a log
file (``-E``), which is how an error can say *why* ssh failed even when Nix
only reports "unexpected end-of-file".
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Callable

from fediversity_providers.core.errors import AccessDenied, InvalidInput, ProviderError, TimedOut, Unreachable
from fediversity_providers.core.secretfile import open_regular_file
from fediversity_providers.core.untrusted import host_name, refuse_control, ssh_config_value, user_name

_ALIAS = "fediversity-target"

_HOST_KEY_SIGNS = (
    "host key verification failed",
    "remote host identification has changed",
    "host key for",
    "no matching host key type",
)
_UNREACHABLE_SIGNS = (
    "connection refused",
    "timed out",
    "no route to host",
    "network is unreachable",
    "connection closed",
    "connection reset",
    "timeout, server",
    "broken pipe",
    "could not resolve hostname",
    "name or service not known",
    "not responding",
    "kex_exchange_identification",
)


def _whole_number(value: object, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"expected a whole number, got {type(value).__name__}", field=field,
                           hint="nothing was changed")
    return value


def _feed(pipe, data: bytes) -> None:
    """Write ``data`` to a child's stdin and close it; a child that stopped reading is not an error here."""
    try:
        pipe.buffer.write(data) if hasattr(pipe, "buffer") else pipe.write(data)
        pipe.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except (BrokenPipeError, OSError):
            pass


class Result:
    """What a remote command did: exit status, ``@@fp`` values, other output."""

    def __init__(self, status: int, values: dict[str, str], stdout: list[str], stderr: list[str]) -> None:
        self.status = status
        self.values = values
        self.stdout = stdout
        self.stderr = stderr

    def tail(self, lines: int = 15) -> str:
        return "\n".join((self.stderr or self.stdout)[-lines:])


class Target:
    """One machine, as the ``ssh`` input object describes it.  Use as a context manager."""

    def __init__(self, ssh: dict, *, sudo: bool | None = None, log: Callable[[str], None] | None = None,
                 deadline: float | None = None) -> None:
        self.ssh = ssh
        self.deadline = deadline  # the request's, a time.monotonic() instant
        self.host = ssh["host"]
        self.port = _whole_number(ssh.get("port", 22), field="ssh.port")
        self.user = ssh.get("user", "root")
        self.connect_timeout = _whole_number(ssh.get("connectTimeout", 10), field="ssh.connectTimeout")
        self.sudo = (self.user != "root") if sudo is None else sudo
        self.log = log or (lambda line: None)
        self.command_lines: list[list[str]] = []  # every ssh command line run (never a secret in one)
        self.dir = tempfile.mkdtemp(prefix="fediversity-nixos-config-")
        self.config = os.path.join(self.dir, "ssh_config")
        self.ssh_log = os.path.join(self.dir, "ssh.log")
        try:
            self._write_config()
        except BaseException:
            self.close()
            raise

    # -- set-up -----------------------------------------------------------
    def _write_config(self) -> None:
        """The ``ssh_config``: every value checked and quoted, pinning written first.

        ssh takes the *first* value it reads for a directive, so the
        directives that keep the connection pinned (host key, no fallback
        authentication, no proxy, no forwarding) come before anything an
        input shapes; and since every input is checked (host name, user
        name, port) and quoted, no input can add a directive of its own.
        """
        host = host_name(self.host, field="ssh.host")
        user = user_name(self.user, field="ssh.user")
        if not 1 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} is not between 1 and 65535", field="ssh.port",
                               hint="give the machine's SSH port; nothing was changed")
        if not 1 <= self.connect_timeout <= 3600:
            raise InvalidInput(f"{self.connect_timeout} is not between 1 and 3600 seconds",
                               field="ssh.connectTimeout", hint="give a timeout in seconds; nothing was changed")
        key = " ".join(self.ssh["hostPublicKey"].split()[:2])  # a trailing comment is ignored
        refuse_control(key, field="ssh.hostPublicKey")
        known_hosts = os.path.join(self.dir, "known_hosts")
        with open(known_hosts, "w") as f:
            f.write(f"{_ALIAS} {key}\n")
        alive = max(1, self.connect_timeout // 3)
        lines = [
            f"Host {_ALIAS}",
            # -- pinning and what must never change, first --
            f"  HostKeyAlias {_ALIAS}",
            f"  UserKnownHostsFile {ssh_config_value(known_hosts, field='ssh_config', tokens=True)}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  CheckHostIP no",
            "  UpdateHostKeys no",
            "  VerifyHostKeyDNS no",
            "  KnownHostsCommand none",
            "  ProxyCommand none",
            "  ProxyJump none",
            "  PermitLocalCommand no",
            "  ForwardAgent no",
            "  ForwardX11 no",
            "  ClearAllForwardings yes",
            "  BatchMode yes",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            "  IdentityAgent none",
            # -- then what the inputs say, checked and quoted --
            f"  HostName {ssh_config_value(host, field='ssh.host', tokens=True)}",
            f"  Port {self.port}",
            f"  User {ssh_config_value(user, field='ssh.user')}",
            f"  ConnectTimeout {self.connect_timeout}",
            f"  ServerAliveInterval {alive}",
            "  ServerAliveCountMax 3",
            "  LogLevel INFO",
            # One connection for the whole request (copy and activation);
            # the magic-rollback confirmation opts out to prove a fresh one works.
            "  ControlMaster auto",
            f"  ControlPath {ssh_config_value(os.path.join(self.dir, 'mux'), field='ssh_config', tokens=True)}",
            "  ControlPersist 30",
        ]
        key_file = self.ssh.get("privateKeyFile")
        if not key_file:
            lines += [f"  IdentityFile ~/.ssh/{name}" for name in ("id_ed25519", "id_ecdsa", "id_rsa")]
        else:
            # A regular file, checked without blocking: a FIFO would hang ssh.
            os.close(open_regular_file(os.path.expanduser(key_file), field="ssh.privateKeyFile"))
            lines.append(f"  IdentityFile {ssh_config_value(key_file, field='ssh.privateKeyFile', tokens=True)}")
        lines.append("  IdentitiesOnly yes")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if os.path.exists(os.path.join(self.dir, "mux")):
            subprocess.run(["ssh", "-F", self.config, "-O", "exit", _ALIAS], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what ssh said ----------------------------------------------------
    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def store_uri(self) -> str:
        return f"ssh-ng://{_ALIAS}"

    def nix_env(self) -> dict[str, str]:
        """Environment for ``nix copy``: our ssh options, and nix-command enabled."""
        env = dict(os.environ)
        env["NIX_SSHOPTS"] = f"-F {self.config} -E {self.ssh_log}"
        return env

    def take_ssh_log(self) -> str:
        """ssh's own diagnostics since the last call."""
        try:
            with open(self.ssh_log) as f:
                text = f.read()
            os.unlink(self.ssh_log)
        except FileNotFoundError:
            return ""
        return text.strip()

    def ssh_error(self, what: str, detail: str, *, during: str = "") -> ProviderError | None:
        """The error kind and message for ssh's diagnostics, or None if ssh did not fail."""
        lower = detail.lower()
        where = f"{what} ({self.label})" + (f" {during}" if during else "")
        if any(sign in lower for sign in _HOST_KEY_SIGNS):
            presented = re.search(r"The fingerprint for the (\S+) key sent by the remote host is\s+(\S+?)\.?$",
                                  detail, re.M)
            seen = f"it presented {presented[1]} key {presented[2]}, " if presented else ""
            last = detail.strip().splitlines()[-1]
            return AccessDenied(
                f"{where}: the machine's SSH host key does not match ssh.hostPublicKey ({seen}expected "
                f"{self.expected_fingerprint()}); nothing was changed. ssh said: {last}",
                field="ssh.hostPublicKey",
                hint=f"check the key with: ssh-keyscan -p {self.port} {self.host}",
            )
        if "permission denied" in lower:
            return AccessDenied(
                f"{where}: the machine refused the login as {self.user!r}. ssh said: {detail}",
                field="ssh.privateKeyFile",
                hint="check ssh.user and that ssh.privateKeyFile's public key is authorized on the machine",
            )
        if any(sign in lower for sign in _UNREACHABLE_SIGNS):
            return Unreachable(
                f"{where}: cannot reach the machine. ssh said: {detail}",
                field="ssh.host",
                hint="check that the machine is up and reachable, then retry",
            )
        return None

    def expected_fingerprint(self) -> str:
        """``TYPE SHA256:...`` of ``ssh.hostPublicKey``, as ssh prints fingerprints."""
        kind, _, blob = self.ssh["hostPublicKey"].strip().partition(" ")
        try:
            raw = base64.b64decode(blob.split()[0], validate=True)
        except (ValueError, IndexError):
            return kind
        digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
        return f"{kind} SHA256:{digest}"

    # -- the request's deadline -------------------------------------------
    def time_left(self, what: str, consequence: str) -> float | None:
        """Seconds before the request's deadline, or None; TimedOut when none are left."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out(what, consequence)
        return left

    def timed_out(self, what: str, consequence: str) -> TimedOut:
        return TimedOut.deadline_passed(f"{what} on {self.label}", consequence)

    # -- running commands -------------------------------------------------
    def run(self, script: str, args: list[str], *, timeout: float | None = None, what: str = "remote command",
            relay: bool = False, fresh: bool = False, stdin: bytes | None = None) -> Result:
        """Run ``sh -c SCRIPT fp ARGS`` on the target (under sudo when asked).

        ``fresh`` opens a new connection instead of sharing the request's one.
        ``stdin`` is fed to the remote command's standard input (then closed),
        which is how a secret reaches the machine: never in ``args``, which
        are on ssh's command line.  Without it the command reads /dev/null.
        Raises the ssh error kind when ssh itself failed (status 255 with a
        diagnostic); otherwise returns the result, whatever the status.
        """
        consequence = ("it was stopped, but may have gone on on the machine: read the resource to see "
                       "what the machine runs")
        left = self.time_left(what, "nothing more was started")
        by_deadline = left is not None and (timeout is None or left < timeout)
        if by_deadline:
            timeout = left
        remote = ["sh", "-c", script, "fp", *args]
        if self.sudo:
            remote = ["sudo", "-n", "--", *remote]
        argv = ["ssh", "-F", self.config, "-E", self.ssh_log, "-T"]
        if fresh:
            argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        argv += [_ALIAS, shlex.join(remote)]
        self.command_lines.append(argv)  # what a process listing shows (tests check that no secret is in one)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
        stderr: list[str] = []
        feeder = None
        if stdin is not None:
            feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
            feeder.start()

        def pump_stderr() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                line = line.rstrip("\n")
                stderr.append(line)
                if relay:
                    self.log(line)

        reader = threading.Thread(target=pump_stderr, daemon=True)
        reader.start()
        values: dict[str, str] = {}
        stdout: list[str] = []
        killer = None
        if timeout is not None:
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
        started = time.monotonic()
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                line = line.rstrip("\n")
                if line.startswith("@@fp "):
                    key, _, value = line[5:].partition("=")
                    values[key] = value
                else:
                    stdout.append(line)
                    if relay:
                        self.log(line)
            status = proc.wait()
        finally:
            if killer is not None:
                killer.cancel()
            if feeder is not None:
                feeder.join(1)
            # A killed client's connection master may keep stderr open: wait briefly then.
            reader.join(0.5 if proc.returncode is not None and proc.returncode < 0 else 5)
        diag = self.take_ssh_log()
        if by_deadline and status < 0 and timeout is not None and time.monotonic() - started >= timeout:
            raise self.timed_out(what, consequence)
        if status == 255 or (status < 0 and timeout is not None):
            # Our remote program never exits 255: this is ssh giving up.
            timed_out = timeout is not None and time.monotonic() - started >= timeout
            detail = diag or "\n".join(stderr[-5:]) or (f"no answer within {timeout:.0f}s" if timed_out else "")
            error = self.ssh_error(what, detail or "connection lost")
            if error is None:
                error = Unreachable(f"{what} on {self.label}: the connection failed: {detail or 'connection lost'}",
                                    field="ssh.host", hint="check that the machine is reachable, then retry")
            raise error
        if self.sudo and status == 1 and any("sudo:" in l and "password" in l for l in stderr):
            raise AccessDenied(
                f"{what} on {self.label}: sudo asks for a password; the provider needs passwordless sudo",
                field="sudo", hint=f"allow {self.user} to run sudo without a password, or connect as root")
        return Result(status, values, stdout, stderr)
