"""The server's side of one connection: the opening handshake, then the handler.

``ServerConnection`` is what a handler gets: a ``Connection`` plus
``respond()`` and ``server``. Its ``_handshake()`` runs in the connection's
own thread (started by ``Server``): it refuses bytes that can't be HTTP,
reads the request, calls ``process_request``/``process_response``, and
writes the response through the core's one sending path (``_drive``, see
core.py). Its waits for the request (``reader.peek``/``poll_readable``,
``reader.receive_handshake``) are counted in ``_io_users`` like every poll.
``run_handler()`` then runs the application's handler in that same thread
and closes the connection when it returns. It takes no lock of its own and
never the connection's directly (only through the core's functions); nothing
here runs on the background thread.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...exceptions import ConnectionClosed
from ...protocol.close_codes import CloseCode
from ...protocol.connection import State
from ...protocol.headers import HeadersLike
from ...protocol.http11 import Request, Response
from ...protocol.server import ServerProtocol
from ..connection import Connection, driver, reader
from ..deadline import Deadline
from .listener import PEEK_SIZE, not_http

if TYPE_CHECKING:
    from . import Server

__all__ = [
    "Handler",
    "ProcessRequest",
    "ProcessResponse",
    "SelectSubprotocol",
    "ServerConnection",
    "run_handler",
]

Handler = Callable[["ServerConnection"], Any]
ProcessRequest = Callable[["ServerConnection", Request], Response | None]
ProcessResponse = Callable[["ServerConnection", Request, Response], Response | None]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], str | None]


class ServerConnection(Connection):
    """A connection accepted by a ``Server``; the handler's argument.

    Everything from ``Connection``, plus ``respond()`` for ``process_request``
    hooks and ``server`` for broadcasting to the others.
    """

    __slots__ = ("server", "username")

    protocol: ServerProtocol

    def __init__(
        self, sock: socket.socket, protocol: ServerProtocol, server: Server | None, **kwargs: Any
    ) -> None:
        super().__init__(sock, protocol, **kwargs)
        #: The server that accepted this connection (None under WSGI: see ``syncws.wsgi``).
        self.server = server
        #: The user ``basic_auth()`` authenticated, if any.
        self.username: str | None = None

    def respond(self, status: int, text: str, headers: HeadersLike | None = None) -> Response:
        """Build a plain HTTP response, for ``process_request`` to refuse or serve HTTP."""
        return self.protocol.reject(status, text, headers=headers)

    def _handshake(
        self,
        deadline: Deadline,
        process_request: ProcessRequest | None,
        process_response: ProcessResponse | None,
        additional_headers: HeadersLike | None,
    ) -> bool:
        """Read the request, answer it; True if the connection is now open."""
        refusal = None if self._tls else self._refuse_non_http(deadline)
        request = self._receive_handshake(deadline) if refusal is None else None
        response: Response | None = refusal
        if request is not None:
            assert isinstance(request, Request)
            self.request = request
            response = self._build_response(
                request, process_request, process_response, additional_headers
            )
        if response is not None:
            self._drive(self._send_response, response, check_open=False, write=False)
        else:
            self.response = self.protocol.response
        with contextlib.suppress(TimeoutError, OSError):
            driver.flush(self, deadline)
        # Open, or already closing if a close frame came right behind the request.
        if self.protocol.state is not State.CONNECTING and self.protocol.handshake_exc is None:
            # The query string may carry a token: keep it out of the log.
            path = self.request.path.partition("?")[0] if self.request else ""
            self.logger.debug("connection open: %s %s", self.remote_address, path)
            return True
        exc = self.protocol.handshake_exc
        if exc is not None and response is None:
            self.logger.info("opening handshake failed: %s", exc)
        # Let the reactor drain what the client still sends, then close:
        # closing now with unread input could reset the response away.
        self.close_after_failed_handshake()
        return False

    def _send_response(self, response: Response) -> None:
        # Lock held (through _drive).
        self.protocol.send_response(response)
        self.response = response
        # Queue the response before routing events: this thread writes it
        # (_handshake), so the reactor isn't asked to (an epoll_ctl, and a
        # thread start when the reactor was idle).
        self._emit()
        self._process_events()

    def _refuse_non_http(self, deadline: Deadline) -> Response | None:
        """A 400 for a peer whose first bytes can't start an HTTP request; else None.

        Without this, bytes with no line end (a TLS ClientHello from a
        ``wss://`` client, noise) would wait for ``open_timeout``. Peeking
        costs no extra system call: the handshake would poll, then read.
        """
        # The request is usually there already: peek first, poll only if not.
        head = reader.peek(self, PEEK_SIZE)
        if head is None:
            if not reader.poll_readable(self, deadline):
                return None  # the handshake goes on as usual (and times out, if it must)
            head = reader.peek(self, PEEK_SIZE)
        if not head:
            return None  # nothing yet, EOF or an error: the handshake will tell
        verdict = not_http(head)
        if verdict is None:
            return None
        self.logger.info("opening handshake failed: %s", verdict)
        return self.respond(400, f"Bad Request: {verdict}.\n")

    def _build_response(
        self,
        request: Request,
        process_request: ProcessRequest | None,
        process_response: ProcessResponse | None,
        additional_headers: HeadersLike | None,
    ) -> Response:
        try:
            response = process_request(self, request) if process_request else None
            if response is None:
                if self.server is not None and self.server.shutting_down:
                    return self.respond(503, "Server is shutting down.\n")
                response = self.protocol.accept(request, additional_headers=additional_headers)
            if process_response is not None:
                response = process_response(self, request, response) or response
        except Exception:
            self.logger.exception("error in process_request or process_response")
            return self.respond(500, "Failed to open a WebSocket connection.\n")
        return response


def run_handler(handler: Handler, connection: ServerConnection) -> None:
    """Run ``handler(connection)``, then close: 1000 when it returns, 1011 when it raises."""
    code = CloseCode.NORMAL_CLOSURE
    try:
        handler(connection)
    except ConnectionClosed:
        pass  # the handler let the close propagate: nothing went wrong here
    except Exception:
        connection.logger.exception("connection handler failed")
        code = CloseCode.INTERNAL_ERROR
    connection.close(code)
