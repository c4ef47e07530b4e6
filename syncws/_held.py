"""WebSockets over TLS terminated by the WSGI server: they keep the request's thread.

What it guards: the cases where syncws can't take the connection from the
server (see ``_handoff``): an ``ssl.SSLSocket`` can't be duplicated (Werkzeug
with ``ssl_context``, gunicorn with ``certfile``), nor can a socket on
Windows, so the WebSocket runs in the request's own thread, on the server's
socket, for its whole life. Each
server's ``finished()`` then ends the request without writing anything after
the 101. One WARNING, with the numbers, tells when WebSockets hold all but one
of the worker's threads.

Threads: everything runs in the request's thread; the counters are guarded by
``_lock``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from . import _handoff
from .exceptions import UnsupportedServer

__all__ = ["WORKING_SERVERS", "Server", "find_server", "release", "unsupported", "warn_if_held"]

logger = logging.getLogger("syncws")

_lock = threading.Lock()
# WebSockets that keep their request's thread, gunicorn's --threads once known
# (syncws.wsgi.gunicorn_post_worker_init), and whether the WARNING was logged.
_held = [0]
threads_per_worker: list[int] = []
_warned: list[bool] = []

#: The servers that hand WebSockets over, for error messages and the docs.
WORKING_SERVERS = (
    "Werkzeug's server (flask run), gunicorn (sync or gthread workers), wsgiref "
    "(wsgiref.simple_server, Django's runserver, bottle), gevent's pywsgi, eventlet's wsgi "
    "or uWSGI (--enable-threads)"
)


def unsupported(why: str) -> NoReturn:
    """Raise ``UnsupportedServer``: ``why``, then what works instead."""
    raise UnsupportedServer(
        f"{why}. Run the application under {WORKING_SERVERS}, or serve WebSockets with "
        "syncws.serve() on a port of their own."
    )


def release() -> None:
    """A held WebSocket ended."""
    with _lock:
        _held[0] -= 1


class Server:
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


class _Werkzeug(Server):
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


class _Gunicorn(Server):
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


#: Why a test client's upgrade fails, and what to do instead (see syncws.testing).
TEST_CLIENT_HINT = (
    "a test client (Flask's app.test_client(), Django's test Client) calls the application "
    "without a server or a socket, so no WebSocket can open: serve the application for real "
    "with syncws.testing.serve_app(app) and connect to it (in pytest: define the fixture "
    "syncws_wsgi_app, then use syncws_app_server and syncws_clients)"
)


def find_server(environ: Mapping[str, Any]) -> Server:
    """The server whose own socket a WebSocket uses from the request's thread."""
    software = str(environ.get("SERVER_SOFTWARE", "this WSGI server"))
    held = _handoff.held_socket(environ)
    if held is not None and held is environ.get("gunicorn.socket"):
        if not environ.get("wsgi.multithread"):
            unsupported(
                f"{software} runs a worker with one thread, which a WebSocket over TLS "
                "terminated by gunicorn would hold for its whole life: start gunicorn with "
                "-k gthread --threads N, or terminate TLS in a proxy"
            )
        return _Gunicorn(environ)
    if held is not None:
        if not environ.get("wsgi.multithread"):
            unsupported(
                f"{software} runs without threads, and a WebSocket over TLS (or on Windows) "
                "keeps its request's thread: it would block every other request; use "
                "app.run(threaded=True) or flask run (threaded by default)"
            )
        return _Werkzeug(environ)
    if "SERVER_SOFTWARE" not in environ:  # no server at all: a test client called the app
        raise UnsupportedServer(TEST_CLIENT_HINT)
    unsupported(
        f"{software} doesn't hand the connection's socket to the application, so it can't "
        "serve WebSockets"
    )


def warn_if_held(environ: Mapping[str, Any]) -> None:
    """One WARNING when held WebSockets leave a server with one thread for HTTP."""
    with _lock:
        _held[0] += 1
        held = _held[0]
        threads = threads_per_worker[0] if threads_per_worker else None
        warn = not _warned and (threads is None or held >= threads - 1)
        if warn:
            _warned.append(True)
    if warn:
        software = environ.get("SERVER_SOFTWARE", "the server")
        of = f" of its {threads}" if threads is not None else ""
        logger.warning(
            "%d WebSocket(s) hold %d%s threads of %s: over TLS terminated by the server "
            "(or on Windows), a WebSocket keeps its request's thread for its whole life; "
            "terminate TLS in a proxy (nginx...) to free the threads, or raise --threads",
            held,
            held,
            of,
            software,
        )
