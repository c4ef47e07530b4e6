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
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn
from urllib.parse import quote

from . import _handoff
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
from .threaded.server_connection import ServerConnection, run_handler

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
# Open WebSockets, and the thread that runs each one's handler.
_connections: dict[ServerConnection, threading.Thread] = {}
# Set once _at_exit() is registered to run at exit.
_atexit_hook: list[bool] = []
# WebSockets that keep their request's thread (TLS), gunicorn's --threads once
# known (gunicorn_post_worker_init), and whether the WARNING about them was logged.
_held = [0]
_threads_per_worker: list[int] = []
_warned: list[bool] = []
# At interpreter exit, how long clients get to answer the 1001.
_EXIT_TIMEOUT = 5.0


def is_websocket_request(environ: Mapping[str, Any]) -> bool:
    """True if the request asks for a WebSocket upgrade."""
    upgrade = environ.get("HTTP_UPGRADE", "")
    connection = environ.get("HTTP_CONNECTION", "")
    return "websocket" in upgrade.lower() and "upgrade" in connection.lower()


def connections() -> set[ServerConnection]:
    """The open WebSocket connections accepted through WSGI in this process."""
    with _lock:
        return set(_connections)


def shutdown_all(
    code: int = CloseCode.GOING_AWAY, reason: str = "", *, timeout: float | None = 0
) -> bool:
    """Close every WebSocket accepted through WSGI in this process (any thread).

    Starts the closing handshakes, then waits up to ``timeout`` seconds
    (None: no limit; 0, the default: not at all) for the connections to
    close and their handlers to return. True if they all did.
    """
    with _lock:
        running = dict(_connections)
    for connection in running:
        connection.start_closing(code, reason)
    if timeout == 0:
        return not running
    deadline = None if timeout is None else time.monotonic() + timeout
    for connection, thread in running.items():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        connection.wait_closed(left)
        if thread is not threading.current_thread():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
    return not connections()


def gunicorn_post_worker_init(worker: Any) -> None:
    """gunicorn hook: on SIGTERM, close WebSockets with 1001 first, then let gunicorn go on.

    In ``gunicorn.conf.py``: ``from syncws.wsgi import gunicorn_post_worker_init as
    post_worker_init``.
    """
    with contextlib.suppress(AttributeError, TypeError):
        _threads_per_worker[:] = [int(worker.cfg.threads)]
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
    handoff = _handoff.take(environ)
    server: _Server | None = None
    if handoff is None:  # TLS, or a server that doesn't give its socket away
        server = _find_server(environ)  # UnsupportedServer before anything is written
        sock, early = server.take_socket()
    else:
        sock, early = handoff.sock, handoff.early
    protocol.send_response(response)
    sock.setblocking(True)
    try:
        sock.sendall(b"".join(protocol.data_to_send()))
    except OSError:
        if handoff is not None:
            handoff.release()
            sock.close()
        raise
    sock.setblocking(False)
    connection = ServerConnection(
        sock, protocol, None, logger=logger, **options.connection_kwargs()
    )
    connection.request = request
    connection.response = response
    if server is not None:
        return _run_in_this_thread(environ, connection, handler, early, server)
    assert handoff is not None
    thread = threading.Thread(
        target=_run,
        args=(connection, handler, early, handoff.release),
        name="syncws-wsgi-handler",
        daemon=True,  # interpreter exit closes WebSockets with 1001 (see _at_exit)
    )
    _register(connection, thread)
    thread.start()
    return Upgrade("101 Switching Protocols", [], _Released(handoff))


def _run_in_this_thread(
    environ: Mapping[str, Any],
    connection: ServerConnection,
    handler: Handler,
    early: bytes,
    server: _Server,
) -> Upgrade:
    """TLS terminated by the server: the WebSocket keeps the request's thread."""
    _register(connection, threading.current_thread())
    _warn_if_held(environ)
    try:
        _run(connection, handler, early, None)
    finally:
        with _lock:
            _held[0] -= 1
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


def _register(connection: ServerConnection, thread: threading.Thread) -> None:
    with _lock:
        _connections[connection] = thread
        if not _atexit_hook:
            # A server's worker that exits (gunicorn's SIGTERM, max_requests, a
            # reload of flask run, Ctrl-C): tell clients (1001), as serve() does.
            atexit.register(_at_exit)
            _atexit_hook.append(True)


def _run(
    connection: ServerConnection,
    handler: Handler,
    early_bytes: bytes,
    release: Callable[[], None] | None,
) -> None:
    """Run the handler, then close, as ``serve()`` does."""
    started = time.monotonic()
    try:
        if early_bytes:
            # Frames the client sent right behind its request, read by the server's buffer.
            connection.receive_early_data(early_bytes)
        connection.start_background()
        run_handler(handler, connection)
    finally:
        if release is not None:
            release()
        with _lock:
            _connections.pop(connection, None)
        connection.logger.debug(
            "WebSocket %s closed after %.1fs: code %s",
            connection.request.path if connection.request else "?",
            time.monotonic() - started,
            connection.close_code,
        )


class _Released:
    """The response iterable of a WebSocket whose connection syncws took: empty.

    The server writes its response on the stand-in (see ``_handoff``); its
    ``close()`` tells that the response was written.
    """

    def __init__(self, handoff: _handoff.HandOff) -> None:
        self._handoff = handoff

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        self._handoff.release()


def _at_exit() -> None:
    # Every handler thread is a daemon: close with 1001 and give clients a moment.
    shutdown_all(timeout=_EXIT_TIMEOUT)


def _warn_if_held(environ: Mapping[str, Any]) -> None:
    """One WARNING when held WebSockets leave a server with one thread for HTTP."""
    with _lock:
        _held[0] += 1
        held = _held[0]
        threads = _threads_per_worker[0] if _threads_per_worker else None
        warn = not _warned and (threads is None or held >= threads - 1)
        if warn:
            _warned.append(True)
    if warn:
        software = environ.get("SERVER_SOFTWARE", "the server")
        of = f" of its {threads}" if threads is not None else ""
        logger.warning(
            "%d WebSocket(s) hold %d%s threads of %s: over TLS terminated by the server, "
            "a WebSocket keeps its request's thread for its whole life; terminate TLS in a "
            "proxy (nginx...) to free the threads, or raise --threads",
            held,
            held,
            of,
            software,
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
        return self.sock, _handoff.drain_gunicorn(self.body)

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
    """The server whose TLS socket a WebSocket uses from the request's thread."""
    software = str(environ.get("SERVER_SOFTWARE", "this WSGI server"))
    if isinstance(environ.get("gunicorn.socket"), ssl.SSLSocket):
        if not environ.get("wsgi.multithread"):
            _unsupported(
                f"{software} terminates TLS in a worker with one thread, which a WebSocket "
                "would hold for its whole life: start gunicorn with -k gthread --threads N, "
                "or terminate TLS in a proxy"
            )
        return _Gunicorn(environ)
    if isinstance(environ.get("werkzeug.socket"), ssl.SSLSocket):
        if not environ.get("wsgi.multithread"):
            _unsupported(
                f"{software} terminates TLS without threads: a WebSocket would block every "
                "other request; use app.run(threaded=True) or flask run (threaded by default)"
            )
        return _Werkzeug(environ)
    if "SERVER_SOFTWARE" not in environ:  # no server at all: a test client called the app
        raise UnsupportedServer(TEST_CLIENT_HINT)
    _unsupported(
        f"{software} doesn't hand the connection's socket to the application, so it can't "
        "serve WebSockets"
    )


#: Why a test client's upgrade fails, and what to do instead (see syncws.testing).
TEST_CLIENT_HINT = (
    "a test client (Flask's app.test_client(), Django's test Client) calls the application "
    "without a server or a socket, so no WebSocket can open: serve the application for real "
    "with syncws.testing.serve_app(app) and connect to it (in pytest: define the fixture "
    "syncws_wsgi_app, then use syncws_app_server and syncws_clients)"
)

#: The servers that hand WebSockets over, for error messages and the docs.
WORKING_SERVERS = (
    "Werkzeug's server (flask run), gunicorn (gthread or sync workers), wsgiref "
    "(wsgiref.simple_server, Django's runserver, bottle), gevent's pywsgi or eventlet's wsgi"
)


def _unsupported(why: str) -> NoReturn:
    raise UnsupportedServer(
        f"{why}. Run the application under {WORKING_SERVERS}, or serve WebSockets with "
        "syncws.serve() on a port of their own."
    )
