"""One HTTP request whose *whole* exchange ends within a time limit.

A socket timeout bounds each ``recv`` only: a server that sends one byte
every few seconds (a drip-fed answer, a stuck proxy) keeps a request alive
forever.  Here a timer shuts the socket down when the limit is reached,
which ends any blocking read at once, so connect, send, headers and body
together take at most ``limit`` seconds (plus the scheduling of one thread).
Standard library only: providers import it when a request needs it.
"""

from __future__ import annotations

import http.client
import socket
import threading

__all__ = ["exchange", "Overdue", "MAX_ANSWER_BYTES"]

#: An answer larger than this is not an API's answer; reading stops there.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


class Overdue(TimeoutError):
    """The exchange did not complete within its limit (the request may have been carried out)."""


def exchange(conn: http.client.HTTPConnection, method: str, target: str, *, body: bytes | None,
             headers: dict[str, str], limit: float) -> tuple[int, str, bytes]:
    """(status, reason, body) of one request on ``conn``, closed afterwards.

    Raises :class:`Overdue` past ``limit`` seconds, ``OSError`` /
    ``http.client.HTTPException`` when the connection fails, and
    ``http.client.HTTPException`` for an answer over :data:`MAX_ANSWER_BYTES`.
    """
    if limit <= 0:
        raise Overdue("the request's deadline passed before it could be sent")
    expired = threading.Event()
    sent: list = []  # the socket the request went out on: http.client lets go of it before the body is read

    def cut() -> None:
        expired.set()
        for sock in {id(s): s for s in (conn.sock, *sent) if s is not None}.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    conn.timeout = limit
    timer = threading.Timer(limit, cut)
    timer.daemon = True
    timer.start()
    try:
        conn.request(method, target, body=body, headers=headers)
        sent.append(conn.sock)
        response = conn.getresponse()
        raw = response.read(MAX_ANSWER_BYTES + 1)
        if len(raw) > MAX_ANSWER_BYTES:
            raise http.client.HTTPException(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        return response.status, response.reason or "", raw
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set() or isinstance(error, socket.timeout):
            raise Overdue(f"no complete answer within {limit:.1f} s") from None
        raise
    finally:
        timer.cancel()
        conn.close()
