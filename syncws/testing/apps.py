"""A WSGI application (Flask, Django...) served for real during a test, and clients for it.

``serve_app(app)`` runs ``app`` on a threaded server (Werkzeug's, or the
standard library's ``wsgiref`` as Django's ``runserver`` does) on a free port
of 127.0.0.1, as a context manager that yields a ``RunningApp``.
``RunningApp.connect(path, query=..., headers=..., cookies=...)`` opens a
WebSocket client to it; ``ClientFactory`` opens as many as a test wants and
closes them all at the end (the ``syncws_clients`` fixture).

Threads: the server's accept loop runs in a thread of its own
(``syncws-test-app``), each request in a thread of the server's; on exit,
the WebSockets this server accepted are closed with 1001 and their handler
threads joined, the server stops and its request threads are joined (each
wait bounded by ``TIMEOUT``). No lock is held while
a connection or the server is called, except the factory's, around its list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socketserver
import threading
import wsgiref.simple_server
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlencode

from .. import wsgi
from ..threaded.client import ClientConnection, connect

__all__ = ["ClientFactory", "RunningApp", "serve_app"]

#: Default bound on every wait of these helpers, in seconds.
TIMEOUT = 10.0

logger = logging.getLogger("syncws")

Query = Mapping[str, Any] | Sequence[tuple[str, Any]] | str


def websocket_path(
    path: str = "/",
    query: Query | None = None,
) -> str:
    """``path`` with ``query`` (a dict, pairs, or an encoded string) appended."""
    if not path.startswith("/"):
        raise ValueError(f"path starts with /, as in '/ws', not {path!r}")
    if query:
        encoded = query if isinstance(query, str) else urlencode(query, doseq=True)
        path += ("&" if "?" in path else "?") + encoded
    return path


def request_headers(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    cookies: Mapping[str, str] | None,
) -> list[tuple[str, str]]:
    """``headers`` as pairs, plus a ``Cookie`` header made of ``cookies``."""
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    if cookies:
        pairs.append(("Cookie", "; ".join(f"{name}={value}" for name, value in cookies.items())))
    return pairs


@dataclasses.dataclass(frozen=True)
class RunningApp:
    """An application served by ``serve_app()``."""

    #: ``http://127.0.0.1:PORT``: for HTTP requests (a login, a form...).
    url: str
    port: int

    def ws_url(self, path: str = "/", query: Query | None = None) -> str:
        """``ws://127.0.0.1:PORT/path?query``."""
        return "ws" + self.url[4:] + websocket_path(path, query)

    def connect(
        self,
        path: str = "/",
        *,
        query: Query | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        cookies: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ClientConnection:
        """Open a WebSocket to ``path`` (the caller closes it); ``options`` go to ``connect()``.

        ``origin`` defaults to the application's own URL, as a page it
        served would send it (``origin=None`` sends none). Any thread.
        """
        options.setdefault("origin", self.url)
        options.setdefault("open_timeout", TIMEOUT)
        extra = request_headers(headers, cookies)
        connection: ClientConnection = connect(
            self.ws_url(path, query), additional_headers=extra or None, **options
        )
        return connection

    def __str__(self) -> str:
        return self.url


@contextlib.contextmanager
def serve_app(
    app: Callable[..., Any], *, server: Literal["auto", "werkzeug", "wsgiref"] = "auto"
) -> Iterator[RunningApp]:
    """Serve the WSGI application ``app`` on a free loopback port until the block ends.

    Works for any WSGI application: ``flask_app``, Django's
    ``get_wsgi_application()``... ``server`` picks the threaded server:
    Werkzeug's (Flask brings it), or the standard library's ``wsgiref`` with
    a thread per request, as Django's ``runserver`` is; ``"auto"`` takes
    Werkzeug's when it is installed. Call it from the test's thread.
    """
    running = _make_server(app, server)
    thread = threading.Thread(target=running.serve_forever, name="syncws-test-app")
    thread.start()
    port: int = running.server_port
    try:
        yield RunningApp(f"http://127.0.0.1:{port}", port)
    finally:
        _close_websockets(port)
        running.shutdown()
        thread.join(TIMEOUT)
        running.server_close()
        for request_thread in running.request_threads():
            request_thread.join(TIMEOUT)


def _close_websockets(port: int) -> None:
    """Close the WebSockets accepted on ``port`` with 1001; wait for their handlers."""
    wsgi.shutdown_all(timeout=TIMEOUT, where=lambda connection: _local_port(connection) == port)


def _local_port(connection: Any) -> int | None:
    with contextlib.suppress(OSError, AttributeError, TypeError, IndexError):
        return int(connection.local_address[1])
    return None


class _Tracked(socketserver.ThreadingMixIn):
    """A thread per request, each kept until it ends, so that the server's exit joins them."""

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="syncws-test-request",
            daemon=True,
        )
        with _threads_lock:
            threads = _request_threads.setdefault(id(self), [])
            threads[:] = [t for t in threads if t.is_alive()]
            threads.append(thread)
        thread.start()

    def request_threads(self) -> list[threading.Thread]:
        with _threads_lock:
            return _request_threads.pop(id(self), [])


# Request threads by id(server): a mixin can't set attributes before both servers' __init__.
_threads_lock = threading.Lock()
_request_threads: dict[int, list[threading.Thread]] = {}


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    """wsgiref's request handler, logging to ``syncws`` (DEBUG) instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("test app: %s %s", self.address_string(), format % args)


def _make_server(app: Callable[..., Any], server: str) -> Any:
    if server not in ("auto", "werkzeug", "wsgiref"):
        raise ValueError(f"server is 'auto', 'werkzeug' or 'wsgiref', not {server!r}")
    if server != "wsgiref":
        try:
            from werkzeug.serving import ThreadedWSGIServer  # noqa: PLC0415 - optional
        except ImportError:  # pragma: no cover - the test extra has Flask, hence Werkzeug
            if server == "werkzeug":
                raise ImportError("serve_app(server='werkzeug'): pip install werkzeug") from None
        else:

            class Werkzeug(_Tracked, ThreadedWSGIServer):
                pass

            return Werkzeug("127.0.0.1", 0, app)

    class Wsgiref(_Tracked, wsgiref.simple_server.WSGIServer):
        pass

    return wsgiref.simple_server.make_server(
        "127.0.0.1", 0, app, server_class=Wsgiref, handler_class=_QuietHandler
    )


class ClientFactory:
    """Opens WebSocket clients to a ``RunningApp``; ``close()`` closes every one of them.

    ``factory(path, query=..., headers=..., cookies=..., **options)`` returns
    an open ``ClientConnection`` (see ``RunningApp.connect()``). Any thread.
    """

    def __init__(self, app: RunningApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._clients: list[ClientConnection] = []

    def __call__(
        self,
        path: str = "/",
        *,
        query: Query | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        cookies: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ClientConnection:
        client = self.app.connect(path, query=query, headers=headers, cookies=cookies, **options)
        with self._lock:
            self._clients.append(client)
        return client

    @property
    def clients(self) -> list[ClientConnection]:
        """The clients opened so far, in order."""
        with self._lock:
            return list(self._clients)

    def close(self) -> None:
        """Close every client opened here (those already closed stay so)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
