"""Garage's admin API through an SSH tunnel over the machine's pinned connection.

With ``ssh`` given, ``adminEndpoint`` is the admin API as the Garage machine
itself sees it (``http://127.0.0.1:3903``: the admin API need not listen on
any public address).  Every HTTP request then:

1. opens a TCP connection to ``ssh.host`` and does the SSH handshake; the
   host key must be exactly ``ssh.hostPublicKey`` (no known_hosts, no
   trust-on-first-use), checked before logging in, so a machine with another
   key is refused before any byte of the request, and the token, leaves;
2. logs in with ``ssh.privateKeyFile`` only (or the default key files when it
   is null, as existing_vm does; never the agent, a password or
   keyboard-interactive);
3. opens a ``direct-tcpip`` channel to the endpoint's host and port and
   speaks HTTP over it (the channel is the HTTP connection's socket);
4. closes the channel and the SSH connection once the answer is read.

The whole exchange, handshake included, stays within the limit
:func:`fediversity_providers.core.boundedhttp.exchange` sets: the socket it
shuts down at the limit is the SSH connection's own, which ends a handshake
or a read on the channel at once.

Imported only when ``ssh`` is given: it loads paramiko.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from typing import Any

import paramiko

from fediversity_providers.core.errors import ProviderError
from fediversity_providers.providers.existing_vm import keys
from fediversity_providers.providers.existing_vm.errors import classify

# paramiko logs handshake failures with tracebacks; they are reported here.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

__all__ = ["Tunnel"]

PHASE = "opening the SSH tunnel to Garage's admin API"


class Tunnel:
    """The ``ssh`` input, checked once; :meth:`connection` makes one tunnelled HTTP connection."""

    def __init__(self, ssh: dict, ctx: Any) -> None:
        self.ssh, self.pinned, self.pkey = keys.checked_login(ssh, ctx)
        self.opened = 0  # channels opened: requests that could be sent

    @property
    def where(self) -> str:
        return f"{self.ssh['host']}:{self.ssh['port']}"

    def connection(self, netloc: str, timeout: float) -> "TunnelledConnection":
        return TunnelledConnection(self, netloc, timeout)

    def open(self, target: tuple[str, int], limit: float, conn: "TunnelledConnection") -> "_ChannelSocket":
        """An SSH connection and a channel to ``target`` on the machine, within ``limit`` seconds."""
        ssh, started = self.ssh, time.monotonic()
        wait = max(0.1, min(limit, ssh["connectTimeout"]))

        def left() -> float:
            return max(0.1, wait - (time.monotonic() - started))

        try:
            raw = socket.create_connection((ssh["host"], ssh["port"]), timeout=wait)
        except OSError as error:
            raise self._failed(error, None, started, limit) from None
        sock = _ChannelSocket(raw)
        conn.sock = sock  # from here on, the exchange's limit ends the handshake too
        client = paramiko.SSHClient()
        sock.client = client
        keys.pin(client, ssh, self.pinned)
        try:
            client.connect(ssh["host"], port=ssh["port"], username=ssh["user"], pkey=self.pkey, sock=raw,
                           timeout=left(), banner_timeout=left(), auth_timeout=left(), channel_timeout=left(),
                           allow_agent=False, look_for_keys=self.pkey is None)
            transport = client.get_transport()
            if transport is None:
                raise paramiko.SSHException("No existing session")
            channel = transport.open_channel("direct-tcpip", target, ("127.0.0.1", 0), timeout=left())
            self.opened += 1
        except paramiko.BadHostKeyException as error:
            sock.close()
            found = classify(error, self.ssh, self.pinned, PHASE)  # the mismatch, as existing_vm reports it
            found.message += f"; {self._unsent()}"
            raise found from None
        except paramiko.ChannelException as error:
            sock.close()
            if sock.was_cut:
                raise socket.timeout() from None
            # The machine could not connect to the endpoint: nothing was sent, like a refused connection.
            raise ConnectionRefusedError(
                f"{self.where} could not connect to {target[0]}:{target[1]} ({error.text or error.code})") from None
        except Exception as error:  # paramiko and the socket raise many kinds
            sock.close()
            raise self._failed(error, sock, started, limit) from None
        channel.settimeout(limit)
        sock.channel = channel
        return sock

    def _failed(self, error: BaseException, sock: "_ChannelSocket | None", started: float,
                limit: float) -> BaseException:
        """What the exchange should see: a timeout when its limit ended the attempt, else the error's kind."""
        if (sock is not None and sock.was_cut) or time.monotonic() - started >= limit - 0.05:
            return socket.timeout()
        found = classify(error, self.ssh, self.pinned, PHASE)
        found.message += f"; {self._unsent()}"
        return found

    def _unsent(self) -> str:
        """What a failure to open the tunnel left undone: this request; and everything, if it was the first."""
        if self.opened == 0:
            return "nothing was sent to Garage's admin API, so nothing was changed"
        return "this request was not sent to Garage's admin API"


class TunnelledConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is a ``direct-tcpip`` channel of its own SSH connection."""

    def __init__(self, tunnel: Tunnel, netloc: str, timeout: float) -> None:
        super().__init__(netloc, timeout=timeout)
        self.tunnel = tunnel

    held: "_ChannelSocket | None" = None

    def connect(self) -> None:
        # ``timeout`` is the exchange's whole limit (boundedhttp sets it before the request).
        self.sock = self.held = self.tunnel.open((self.host, self.port), self.timeout, self)

    answering = False

    def getresponse(self) -> http.client.HTTPResponse:
        # http.client closes the connection here when the server will close it, passing
        # the channel to the answer, which is read afterwards: that close must wait.
        self.answering = True
        try:
            return super().getresponse()
        finally:
            self.answering = False

    def close(self) -> None:
        """Close the channel and the SSH connection (at the end of the exchange, even if the answer is unread)."""
        super().close()
        if self.held is not None and not self.answering:
            self.held.close(force=True)


class _ChannelSocket:
    """What http.client and the exchange's timer use as the socket.

    Reads and writes go to the channel; ``shutdown`` (the timer, at the
    limit) closes the channel and shuts the TCP connection under it, which
    ends a read on the channel or the handshake at once.  Like a socket's,
    ``close`` waits for the files made by :meth:`makefile` to be closed
    (http.client closes the connection before it reads the answer's body).
    """

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self.client: paramiko.SSHClient | None = None
        self.channel: paramiko.Channel | None = None
        self.was_cut = False
        self._files = 0
        self._closing = False

    def sendall(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.sendall(data)

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        assert self.channel is not None
        self._files += 1
        return _File(self, self.channel.makefile(*args, **kwargs))

    def settimeout(self, timeout: float | None) -> None:
        if self.channel is not None:
            self.channel.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        self.was_cut = True
        if self.channel is not None:
            self.channel.close()
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, force: bool = False) -> None:
        self._closing = True
        if self._files and not force:
            return
        for part in (self.channel, self.client, self.raw):
            if part is not None:
                try:
                    part.close()
                except Exception:  # closing what failed may fail again; nothing is left to do
                    pass


class _File:
    """A file on the channel that tells its :class:`_ChannelSocket` when it is closed."""

    def __init__(self, owner: _ChannelSocket, inner: Any) -> None:
        self._owner, self._inner, self._open = owner, inner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def close(self) -> None:
        self._inner.close()
        if self._open:
            self._open = False
            self._owner._files -= 1
            if self._owner._closing and not self._owner._files:
                self._owner.close()
