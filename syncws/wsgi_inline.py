"""``accept_inline(environ)``: a WebSocket opened inside a WSGI view, simple-websocket's way.

Code written as ``ws = Server.accept(environ)`` inside a view, then a loop,
then a return, gets a ``ServerConnection`` here and uses it in the view's
thread. That thread is the WSGI server's worker: **it stays taken while the
view runs**, as with simple-websocket. The routes (``syncws.flask``,
``syncws.wsgi.accept()``/``upgrade()``) are the way to the servers' other
behaviours; this is for porting code that has this shape.

After the 101 the connection works on a duplicate of the server's socket,
taken as ``syncws.wsgi`` takes it (``_handoff``): the server's own
descriptor is a stand-in, so the response the server writes when the view
returns (Flask's ``return ""``) goes nowhere, and the server's access log
shows it. Over TLS terminated by the server (or on Windows), the duplicate
is of the plain socket and the old rule holds: close the connection before
the view returns (``with accept_inline(environ) as ws:`` does), or the
server writes its response into the WebSocket stream.

Threads: ``accept_inline()`` runs in the view's thread; the shutdown runs
as a close callback on the ``syncws-callbacks`` thread. Servers: those
``syncws.wsgi`` supports; others get ``UnsupportedServer``.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import Mapping
from typing import Any

from . import _handoff, _held
from .exceptions import InvalidHandshake
from .protocol.http11 import Response
from .protocol.server import ServerProtocol
from .threaded.connection import Connection
from .threaded.options import ServerOptions
from .threaded.server.connection import ServerConnection

__all__ = ["RefusedUpgrade", "accept_inline"]


class RefusedUpgrade(InvalidHandshake):
    """The request isn't a valid WebSocket upgrade; the client got ``response`` (4xx)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"refused the upgrade with {response.status} {response.reason}")
        self.response = response
        self.status_code = response.status


def _option_names() -> frozenset[str]:
    from . import wsgi  # noqa: PLC0415 - syncws.wsgi re-exports this module's names

    return frozenset(inspect.signature(wsgi.upgrade).parameters) - {"environ", "handler"}


def accept_inline(environ: Mapping[str, Any], **options: Any) -> ServerConnection:
    """Answer this WSGI request's upgrade with 101 and return the open connection.

    The caller's thread (a view's) uses it and should close it before
    returning; it keeps the server's worker meanwhile. ``options`` are
    ``syncws.wsgi.upgrade()``'s (``subprotocols``, ``origins``,
    ``compression``, ``max_size``, ``ping_interval``...). A request that
    isn't a valid upgrade gets its 4xx answer written to the client and
    raises ``RefusedUpgrade``; a server that can't hand over its socket
    raises ``UnsupportedServer`` before anything is written.
    """
    from . import wsgi  # noqa: PLC0415 - syncws.wsgi re-exports this module's names

    unknown = sorted(set(options) - _option_names())
    if unknown:
        raise TypeError(f"accept_inline() got an unexpected keyword argument {unknown[0]!r}")
    logger = options.pop("logger", None)
    checked = ServerOptions(**options)
    request = wsgi.request_from_environ(environ)
    protocol = ServerProtocol(
        origins=checked.origin_policy,
        subprotocols=checked.subprotocols,
        extensions=checked.extensions,
        server_header=checked.server_header,
        max_size=checked.max_size,
    )
    protocol.max_frame_size = checked.max_frame_size
    if request.method != "GET":
        response = protocol.reject(405, "WebSocket upgrades use GET.", headers={"Allow": "GET"})
    else:
        response = protocol.accept(request, additional_headers=checked.additional_headers)
    handoff = _handoff.take(environ)
    if handoff is None:  # TLS, Windows: a duplicate of the server's own socket
        server = _held.find_server(environ)  # UnsupportedServer before anything is written
        server_sock, early_bytes = server.take_socket()
        # A descriptor of our own: the server closes its socket when the view
        # returns, maybe while the closing handshake still runs.
        sock = server_sock.dup()
    else:
        # The server's descriptor is a stand-in now: whatever it writes when
        # the view returns goes nowhere, whether the connection is closed or not.
        sock, early_bytes = handoff.sock, handoff.early
    protocol.send_response(response)
    sock.setblocking(True)
    sock.sendall(b"".join(protocol.data_to_send()))
    if response.status != 101:
        _shut_down(sock)
        sock.close()
        if handoff is not None:
            handoff.release()
        raise RefusedUpgrade(response)
    sock.setblocking(False)
    connection = ServerConnection(
        sock, protocol, None, logger=logger, **checked.connection_kwargs()
    )
    connection.request = request
    connection.response = response
    # syncws.wsgi.connections(), shutdown_all(); no thread of syncws to wait for.
    wsgi._register(connection, None)

    def closed(connection: Connection) -> None:
        wsgi._unregister(connection)  # type: ignore[arg-type]
        _shut_down(sock)
        if handoff is not None:
            handoff.release()

    connection.add_close_callback(closed)
    if early_bytes:
        connection.receive_early_data(early_bytes)
    connection.start_background()
    return connection


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
