"""WebSocket connections inside a WSGI application, on the WSGI server's own port.

``accept(environ, start_response, handler)`` turns a WSGI request into a
``ServerConnection``, sends the 101, and starts ``handler(connection)`` in a
thread of syncws's own; then it returns at once, and the server's worker
(thread, process or greenlet) goes back to serving HTTP. A request that
isn't a valid upgrade gets an ordinary HTTP error response (400, 426...).

How the worker goes free (``_handoff``): syncws duplicates the connection's
descriptor, and the server's descriptor becomes a stand-in socket. The
server finishes the request on the stand-in: its access log shows 101, and
not a byte of HTTP follows the 101 on the WebSocket. This works with every
server that shows its socket: Werkzeug's (``flask run``, threaded or not),
gunicorn (``sync``, ``gthread``), wsgiref (``wsgiref.simple_server``,
Django's ``runserver``, ``bottle.run()``), gevent's ``pywsgi`` and eventlet's
``wsgi`` (monkey-patched: the handler's thread is a green thread). Over TLS
terminated by the server, the WebSocket keeps the request's thread
(``_held``). Servers that don't show their socket (waitress, mod_wsgi) are
refused: ``check_server()``, ``check_runner()``.

The server's lifecycle governs the WebSockets: when its process exits
(gunicorn's SIGTERM, ``max_requests``, a reload of ``flask run --debug``,
Ctrl-C), an ``atexit`` hook closes them with 1001 and waits a moment for the
clients. ``gunicorn_post_worker_init``, in ``gunicorn.conf.py``, sends the
1001 at the SIGTERM itself.

Threads: ``accept()``, ``upgrade()`` run in the request's thread; the
handler in its own daemon thread (``syncws-wsgi-handler``);
``connections()``, ``shutdown_all()`` in any thread. ``_lock`` guards the
registry of open WebSockets; under it, only registering the exit hook takes
another lock (threading's). While one is open, the keeper
(``threaded/runtime/keeper.py``) holds the background thread, which closing
it needs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote
from wsgiref.util import is_hop_by_hop

from . import _handoff, _held
from .protocol.close_codes import CloseCode
from .protocol.connection import DEFAULT_MAX_SIZE, State
from .protocol.extensions import ServerExtensionFactory
from .protocol.handshake import OriginPolicy
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import Request, Response
from .protocol.server import DEFAULT_SERVER_HEADER, ServerProtocol
from .threaded.connection import DEFAULT_WRITE_LIMIT
from .threaded.options import ServerOptions
from .threaded.runtime.exiting import at_exit
from .threaded.runtime.keeper import keeper
from .threaded.server.connection import ServerConnection, run_handler
from .wsgi_inline import accept_inline as accept_inline  # noqa: PLC0414 - re-exported

__all__ = [
    "accept",
    "can_hand_over",
    "check_runner",
    "check_server",
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
# Open WebSockets, and the thread that runs each one's handler (None: the
# caller's thread, for accept_inline()).
_connections: dict[ServerConnection, threading.Thread | None] = {}
# Set once _at_exit() is registered to run at exit.
_atexit_hook: list[bool] = []
# At interpreter exit, how long clients get to answer the 1001.
_EXIT_TIMEOUT = 5.0


def is_websocket_request(environ: Mapping[str, Any]) -> bool:
    """True if the request asks for a WebSocket upgrade (any thread)."""
    upgrade = environ.get("HTTP_UPGRADE", "")
    connection = environ.get("HTTP_CONNECTION", "")
    return "websocket" in upgrade.lower() and "upgrade" in connection.lower()


def connections() -> set[ServerConnection]:
    """The WebSocket connections accepted through WSGI in this process, not closed yet.

    Any thread. (A closed connection leaves the registry a moment later, when
    its handler has returned: it isn't listed meanwhile.)
    """
    with _lock:
        return {connection for connection in _connections if connection.state is not State.CLOSED}


def shutdown_all(
    code: int = CloseCode.GOING_AWAY,
    reason: str = "",
    *,
    timeout: float | None = 0,
    where: Callable[[ServerConnection], bool] | None = None,
) -> bool:
    """Close every WebSocket accepted through WSGI in this process (any thread).

    Starts the closing handshakes, then waits up to ``timeout`` seconds
    (None: no limit; 0, the default: not at all) for the connections to
    close and their handlers to return. True if they all did. ``where``
    picks some of them: those for which ``where(connection)`` is true (for
    instance, the ones a test server accepted).
    """
    with _lock:
        running = dict(_connections)
    if where is not None:
        running = {connection: t for connection, t in running.items() if where(connection)}
    for connection in running:
        connection.start_closing(code, reason)
    if timeout == 0:
        return not running
    deadline = None if timeout is None else time.monotonic() + timeout
    for connection, thread in running.items():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        connection.wait_closed(left)
        if thread is not None and thread is not threading.current_thread():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
    return not any(connection in running for connection in connections())


def gunicorn_post_worker_init(worker: Any) -> None:
    """gunicorn hook: on SIGTERM, close WebSockets with 1001 first, then let gunicorn go on.

    In ``gunicorn.conf.py``: ``from syncws.wsgi import gunicorn_post_worker_init as
    post_worker_init``. It also tells syncws the worker's ``threads``, for
    the WARNING about WebSockets over TLS that hold them. gunicorn calls it
    in the worker's main thread.
    """
    with contextlib.suppress(AttributeError, TypeError):
        _held.threads_per_worker[:] = [int(worker.cfg.threads)]
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        threading.Thread(target=shutdown_all, name="syncws-shutdown", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


class Upgrade:
    """The outcome of ``upgrade()``: an HTTP response to send, or an accepted WebSocket.

    ``status``, ``headers`` and ``body`` describe the response of a refused
    upgrade, or ``"101 Switching Protocols"`` with no headers and an empty
    body for an accepted one. Hand ``status`` to ``start_response`` and
    ``body`` to the WSGI server as the response iterable either way: for a
    WebSocket, the server logs 101 and ends the request without a byte
    reaching the client.
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
    ``close_timeout``, ``logger``. The request's thread; ``handler`` runs in
    a thread of its own (see ``upgrade()``).
    """
    outcome = upgrade(environ, handler, **options)
    # 101 is for the access log: what the server writes goes to the stand-in.
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

    The request's thread. Returns once the 101 is sent: ``handler`` runs in
    a thread of its own (``syncws-wsgi-handler``), except over TLS ended by
    the server, where it runs in this thread and this call returns when the
    WebSocket closed. Give the server ``status``, ``headers`` and ``body`` of
    the returned ``Upgrade`` as the response; it must close ``body``.
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
    server: _held.Server | None = None
    if handoff is None:  # TLS, or a server that doesn't give its socket away
        server = _held.find_server(environ)  # UnsupportedServer before anything is written
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
    server: _held.Server,
) -> Upgrade:
    """TLS terminated by the server: the WebSocket keeps the request's thread."""
    _register(connection, threading.current_thread())
    _held.warn_if_held(environ)
    try:
        _run(connection, handler, early, None)
    finally:
        _held.release()
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
    # WSGI applications may not send hop-by-hop headers (PEP 3333): wsgiref
    # answers 500 to a 426 that carries "Upgrade: websocket".
    headers = [(name, value) for name, value in response.headers.items() if not is_hop_by_hop(name)]
    return Upgrade(status, headers, [response.body])


def _register(connection: ServerConnection, thread: threading.Thread | None) -> None:
    """List an accepted connection (``thread``: its handler's, if syncws runs one)."""
    # Closing it needs the background thread, and at interpreter exit, where
    # _at_exit closes it, Python 3.12 lets no thread start: held while open.
    keeper.hold()
    with _lock:
        _connections[connection] = thread
        if not _atexit_hook:
            # A server's worker that exits (gunicorn's SIGTERM, max_requests, a
            # reload of flask run, Ctrl-C): tell clients (1001), as serve() does.
            at_exit(_at_exit)
            _atexit_hook.append(True)
            uwsgi = sys.modules.get("uwsgi")
            if uwsgi is not None:  # uWSGI's workers skip Python's atexit: its own hook
                _chain_uwsgi_atexit(uwsgi)


def _unregister(connection: ServerConnection) -> None:
    """The connection has closed and its handler returned."""
    with _lock:
        if connection not in _connections:
            return
        del _connections[connection]
    keeper.release()


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
        _unregister(connection)
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
        if not self._handoff.late:
            self._handoff.release()


def _chain_uwsgi_atexit(uwsgi: Any) -> None:
    previous = getattr(uwsgi, "atexit", None)

    def chained() -> None:
        _at_exit()
        if callable(previous):
            previous()

    uwsgi.atexit = chained


def _at_exit() -> None:
    # Every handler thread is a daemon: close with 1001 and give clients a moment.
    shutdown_all(timeout=_EXIT_TIMEOUT)


def can_hand_over(environ: Mapping[str, Any]) -> bool:
    """True if this request's server lets syncws serve WebSockets (any thread)."""
    return _handoff.held_socket(environ) is not None or _handoff.findable(environ)


def check_server(environ: Mapping[str, Any]) -> None:
    """Raise ``UnsupportedServer`` if this request comes from a server known not to hand over.

    For any request, not only upgrades: ``syncws.flask`` calls it at each
    request until one passes, so that waitress, mod_wsgi or uWSGI are refused
    at the application's first request rather than with a 500 at the first
    upgrade. Unknown servers (and test clients) pass. Any thread.
    """
    software = str(environ.get("SERVER_SOFTWARE", ""))
    for key, name in _REFUSED_SERVERS:
        if key in environ or software.lower().startswith(key):
            _held.unsupported(f"{name} can't hand a connection over")


#: Servers known to keep their connections to themselves, by an environ key or SERVER_SOFTWARE.
_REFUSED_SERVERS = (
    ("waitress", "waitress (its I/O thread owns every socket and reads ahead)"),
    ("mod_wsgi.version", "mod_wsgi (Apache owns the connection)"),
)


#: Servers known to keep their connections to themselves, by the command that runs them.
_REFUSED_RUNNERS = {
    "waitress-serve": "waitress (its I/O thread owns every socket and reads ahead)",
    "waitress": "waitress (its I/O thread owns every socket and reads ahead)",
    "mod_wsgi-express": "mod_wsgi (Apache owns the connection)",
}


def check_runner(argv: Sequence[str] | None = None) -> None:
    """Raise ``UnsupportedServer`` if this process is a server that can't serve WebSockets.

    Looks at the command that started the process (``waitress-serve``,
    ``python -m waitress``, ``mod_wsgi-express``): ``syncws.flask`` calls it
    when WebSocket routes are registered. Any thread.
    """
    argv = sys.argv if argv is None else argv
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    names = {Path(argv[0]).name if argv else "", getattr(spec, "name", "") or ""}
    names |= {name.split(".")[0] for name in names}
    for name in sorted(names):
        if name in _REFUSED_RUNNERS:
            _held.unsupported(f"{_REFUSED_RUNNERS[name]} can't hand a connection over")
