"""WebSocket connections inside a WSGI application, on the WSGI server's own port.

``accept(environ, start_response, handler)`` turns a WSGI request into a
``ServerConnection`` and runs ``handler(connection)`` in the request's thread,
which is the connection's thread for its whole life; then it finishes the
request without a byte of HTTP after the 101. A request that isn't a valid
upgrade gets an ordinary HTTP error response (400, 426...) instead.

The request's status, for the server's access log, is 101: ``accept()``
gives it to ``start_response`` once the WebSocket closed. By then the socket
is shut down both ways, so whatever the server still writes fails as on a
dropped connection, which both supported servers take without a traceback,
also under Werkzeug's debugger.

Supported servers, which hand over the socket:

- Werkzeug's server (``flask run``, ``app.run()``), threaded (the default);
- gunicorn with the ``gthread`` worker (``-k gthread --threads N``): each
  WebSocket holds one of the worker's threads, so ``--threads`` bounds the
  WebSockets per worker.

Any other server (gunicorn's default ``sync`` worker, waitress, mod_wsgi,
wsgiref...) gets ``UnsupportedServer`` at the first upgrade, before anything
is sent, naming the server and what to use instead.

On gunicorn, add ``post_worker_init = syncws.wsgi.gunicorn_post_worker_init``
to ``gunicorn.conf.py`` so that SIGTERM closes WebSockets with 1001 at once
instead of leaving clients in silence until the graceful timeout.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn
from urllib.parse import quote

from .exceptions import UnsupportedServer
from .protocol.close_codes import CloseCode
from .protocol.connection import DEFAULT_MAX_SIZE
from .protocol.extensions import ServerExtensionFactory
from .protocol.handshake import OriginPolicy
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import Request, Response
from .protocol.server import DEFAULT_SERVER_HEADER, ServerProtocol
from .threaded.connection import DEFAULT_WRITE_LIMIT
from .threaded.options import ServerOptions
from .threaded.server.connection import ServerConnection, run_handler

__all__ = [
    "accept",
    "connections",
    "gunicorn_post_worker_init",
    "is_websocket_request",
    "shutdown_all",
    "upgrade",
]

logger = logging.getLogger("syncws")

Handler = Callable[[ServerConnection], Any]
StartResponse = Callable[..., Any]

_lock = threading.Lock()
_connections: set[ServerConnection] = set()
# Set once shutdown_all() is registered to run at exit.
_atexit_hook: list[bool] = []


def is_websocket_request(environ: Mapping[str, Any]) -> bool:
    """True if the request asks for a WebSocket upgrade."""
    upgrade = environ.get("HTTP_UPGRADE", "")
    connection = environ.get("HTTP_CONNECTION", "")
    return "websocket" in upgrade.lower() and "upgrade" in connection.lower()


def connections() -> set[ServerConnection]:
    """The open WebSocket connections accepted through WSGI in this process."""
    with _lock:
        return set(_connections)


def shutdown_all(code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
    """Start closing every WebSocket accepted through WSGI (any thread; doesn't wait)."""
    for connection in connections():
        connection.start_closing(code, reason)


def gunicorn_post_worker_init(worker: Any) -> None:
    """gunicorn hook: on SIGTERM, close WebSockets with 1001 first, then let gunicorn go on.

    In ``gunicorn.conf.py``: ``from syncws.wsgi import gunicorn_post_worker_init as
    post_worker_init``.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        threading.Thread(target=shutdown_all, name="syncws-shutdown", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


class Upgrade:
    """The outcome of ``upgrade()``: an HTTP response to send, or a finished WebSocket.

    ``status`` (``"101 Switching Protocols"`` once the WebSocket ran),
    ``headers`` and ``body`` describe the response of a refused upgrade.
    Hand ``status`` to ``start_response`` and ``body`` to the WSGI server as
    the response iterable either way: for a finished WebSocket, the server
    logs 101 and ends the request without a byte reaching the client.
    """

    def __init__(self, status: str, headers: list[tuple[str, str]], body: Iterable[bytes]) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def accepted(self) -> bool:
        return self.status.startswith("101")


def accept(
    environ: dict[str, Any], start_response: StartResponse, handler: Handler, **options: Any
) -> Iterable[bytes]:
    """Serve this request as a WebSocket with ``handler``; return the WSGI response iterable.

    For a plain WSGI application. ``options`` are those of ``serve()`` that
    concern one connection: ``subprotocols``, ``origins``, ``compression``,
    ``extensions``, ``additional_headers``, ``server_header``, ``max_size``,
    ``max_queue``, ``write_limit``, ``ping_interval``, ``ping_timeout``,
    ``close_timeout``, ``logger``.
    """
    outcome = upgrade(environ, handler, **options)
    # After a WebSocket, 101 is only for the access log: nothing more is sent.
    start_response(outcome.status, outcome.headers)
    return outcome.body


def upgrade(
    environ: dict[str, Any],
    handler: Handler,
    *,
    subprotocols: Sequence[str] | None = None,
    origins: OriginPolicy | None = None,
    compression: Literal["deflate"] | None = "deflate",
    extensions: Sequence[ServerExtensionFactory] | None = None,
    additional_headers: HeadersLike | None = None,
    server_header: str | None = DEFAULT_SERVER_HEADER,
    max_size: int | None = DEFAULT_MAX_SIZE,
    max_queue: int = 16,
    write_limit: int = DEFAULT_WRITE_LIMIT,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float | None = 10.0,
    logger: logging.Logger | None = None,
) -> Upgrade:
    """Like ``accept()``, for frameworks that build their own response (see ``syncws.flask``).

    Blocks while the WebSocket is open: ``handler`` runs in this thread.
    """
    options = ServerOptions(  # checked once, as serve() does
        subprotocols=subprotocols, origins=origins, compression=compression, extensions=extensions,
        server_header=server_header, max_size=max_size, max_queue=max_queue,
        write_limit=write_limit, ping_interval=ping_interval, ping_timeout=ping_timeout,
        close_timeout=close_timeout,
    )  # fmt: skip
    request = request_from_environ(environ)
    protocol = ServerProtocol(
        origins=options.origin_policy,  # re.compile() patterns too, as serve() takes them
        subprotocols=options.subprotocols,
        extensions=options.extensions,
        server_header=server_header,
        max_size=max_size,
    )
    if request.method != "GET":
        refusal = protocol.reject(405, "WebSocket upgrades use GET.", headers={"Allow": "GET"})
        return _refusal(refusal)
    response = protocol.accept(request, additional_headers=additional_headers)
    if response.status != 101:
        logger_ = logger or logging.getLogger("syncws")
        logger_.info("opening handshake failed: %s", protocol.handshake_exc)
        return _refusal(response)
    server = _find_server(environ)  # UnsupportedServer before anything is written
    sock, early_bytes = server.take_socket()
    protocol.send_response(response)
    sock.setblocking(True)
    sock.sendall(b"".join(protocol.data_to_send()))
    sock.setblocking(False)
    connection = ServerConnection(
        sock,
        protocol,
        None,
        logger=logger,
        **options.connection_kwargs(),
    )
    connection.request = request
    connection.response = response
    _run(connection, handler, early_bytes)
    return Upgrade("101 Switching Protocols", [], server.finished())


def request_from_environ(environ: Mapping[str, Any]) -> Request:
    """The opening handshake as the client sent it, rebuilt from a WSGI environ."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
        # WSGI hands paths over decoded as latin-1: quote them again.
        target = quote(path.encode("latin-1"), safe="/;:@&=+$,!~*'()%")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    headers = Headers()
    for key, value in environ.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            headers.add(key[5:].replace("_", "-").title(), value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.add(key.replace("_", "-").title(), str(value))
    return Request(str(target), headers, environ.get("REQUEST_METHOD", "GET"))


def _refusal(response: Response) -> Upgrade:
    status = f"{response.status} {response.reason}"
    headers = [(name, value) for name, value in response.headers.items() if name != "Connection"]
    return Upgrade(status, headers, [response.body])


def _run(connection: ServerConnection, handler: Handler, early_bytes: bytes) -> None:
    """Run the handler in this thread, then close, as ``serve()`` does."""
    with _lock:
        _connections.add(connection)
        if not _atexit_hook:
            # A development server stopped with Ctrl-C: tell clients (1001).
            atexit.register(shutdown_all)
            _atexit_hook.append(True)
    started = time.monotonic()
    try:
        if early_bytes:
            # Frames the client sent right behind its request, read by the server's buffer.
            connection.receive_early_data(early_bytes)
        connection.start_background()
        run_handler(handler, connection)
    finally:
        with _lock:
            _connections.discard(connection)
        connection.logger.debug(
            "WebSocket %s closed after %.1fs: code %s",
            connection.request.path if connection.request else "?",
            time.monotonic() - started,
            connection.close_code,
        )


# -- how each server hands over its socket and ends the request ---------------------------


class _Server:
    def take_socket(self) -> tuple[socket.socket, bytes]:
        raise NotImplementedError

    def finished(self) -> Iterable[bytes]:
        raise NotImplementedError


class _Finished:
    """A WSGI response iterable that ends the request without writing anything."""

    def __init__(self, exception: Callable[[], BaseException]) -> None:
        self._exception = exception

    def __iter__(self) -> Iterator[bytes]:
        # A plain method, not a generator: StopIteration must leave as it is.
        raise self._exception()


class _Werkzeug(_Server):
    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.sock: socket.socket = environ["werkzeug.socket"]
        self.stream = environ.get("wsgi.input")

    def take_socket(self) -> tuple[socket.socket, bytes]:
        self.sock.setblocking(False)
        early = b""
        if isinstance(self.stream, io.BufferedReader):
            # What the server's buffered reader took beyond the request's headers.
            with contextlib.suppress(OSError, ValueError):
                early = self.stream.read1(65536) or b""
        return self.sock, early

    def finished(self) -> Iterable[bytes]:
        # The closing handshake shut the socket down; the server's own file
        # objects keep its descriptor open. An empty body: Werkzeug logs the
        # status (101), then its write fails with EPIPE, which it treats as a
        # dropped connection: no traceback, also under the debugger, which
        # would report any exception raised here as an error.
        _shut_down(self.sock)
        return ()


class _Gunicorn(_Server):
    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.sock: socket.socket = environ["gunicorn.socket"]
        self.body = environ.get("wsgi.input")

    def take_socket(self) -> tuple[socket.socket, bytes]:
        unreader: Any = getattr(getattr(self.body, "reader", None), "unreader", None)
        early = b""
        if hasattr(unreader, "take_buffered"):
            early = unreader.take_buffered()
        elif isinstance(getattr(unreader, "buf", None), io.BytesIO):  # older gunicorn
            early = unreader.buf.getvalue()
            unreader.buf = io.BytesIO()
        return self.sock, early

    def finished(self) -> Iterable[bytes]:
        # gunicorn's gthread worker ends a request that raises StopIteration
        # without writing a response (its access log shows the status, 101),
        # and closes the connection.
        _shut_down(self.sock)
        return _Finished(StopIteration)


def _shut_down(sock: socket.socket) -> None:
    """Make sure that nothing the server writes after the WebSocket gets out."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _find_server(environ: Mapping[str, Any]) -> _Server:
    software = str(environ.get("SERVER_SOFTWARE", "this WSGI server"))
    if "gunicorn.socket" in environ:
        if not environ.get("wsgi.multithread"):
            _unsupported(
                f"{software} runs a worker with one thread, which a WebSocket would hold "
                "for its whole life: start gunicorn with -k gthread --threads N (N WebSockets "
                "per worker)"
            )
        return _Gunicorn(environ)
    if "werkzeug.socket" in environ:
        if not environ.get("wsgi.multithread"):
            _unsupported(
                f"{software} is running without threads: a WebSocket would block every other "
                "request; use app.run(threaded=True) or flask run (threaded by default)"
            )
        return _Werkzeug(environ)
    _unsupported(
        f"{software} doesn't hand the connection's socket to the application, so it can't "
        "serve WebSockets"
    )


def _unsupported(why: str) -> NoReturn:
    raise UnsupportedServer(
        f"{why}. Run the application under gunicorn -k gthread --threads N or Werkzeug's "
        "threaded server, or serve WebSockets with syncws.serve() on a port of their own."
    )
