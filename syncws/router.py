"""``route(url_map, ...)``: one server, a handler per URL, with werkzeug's routing (as websockets).

A program written for ``websockets.sync.router`` ports by changing its
import: ``route(url_map, host, port, ...)`` and ``unix_route(url_map,
path, ...)`` take a werkzeug ``Map`` whose rules' endpoints are handlers
``handler(connection, **url_values)``, plus every option of ``serve()``.
A request that matches no rule gets 404; a ``Rule(redirect_to=...)`` a 302.
A ``process_request`` of your own runs first; if it answers, routing
doesn't happen. werkzeug is imported when ``route()`` is called (``pip
install werkzeug``; Flask brings it).

Threads: ``Router.route_request`` runs in each connection's thread during
the handshake and stores the match on the connection (``handler``,
``handler_kwargs``); ``Router.handler`` then runs the matched handler in
that same thread. The ``Map`` is only read after ``route()``.
"""

from __future__ import annotations

import ssl as ssl_module
import urllib.parse
from typing import Any, Literal

from .protocol.http11 import Request, Response
from .threaded.server import Server, serve, unix_serve
from .threaded.server.connection import ServerConnection

__all__ = ["Router", "route", "unix_route"]


class Router:
    """Dispatches connections to the handlers of a werkzeug ``Map``.

    Subclass it and pass ``route(create_router=...)`` to change
    ``get_server_name``, ``redirect``, ``not_found``, ``route_request`` or
    ``handler``.
    """

    def __init__(self, url_map: Any, server_name: str | None = None, url_scheme: str = "ws"):
        self.url_map = url_map
        self.server_name = server_name
        self.url_scheme = url_scheme
        for rule in url_map.iter_rules():
            rule.websocket = True  # werkzeug matches WebSocket rules only for ws:// URLs

    def get_server_name(self, connection: ServerConnection, request: Request) -> str:
        """The host that redirects name: ``server_name``, else the request's ``Host``.

        Runs in the connection's thread, during the handshake.
        """
        if self.server_name is not None:
            return self.server_name
        return request.headers.get("Host", "localhost")

    def redirect(self, connection: ServerConnection, url: str) -> Response:
        """The answer to a ``Rule(redirect_to=...)``: 302 to ``url``. Connection's thread."""
        response = connection.respond(302, f"Found at {url}")
        response.headers["Location"] = url
        return response

    def not_found(self, connection: ServerConnection) -> Response:
        """The answer when no rule matches: 404. Connection's thread."""
        return connection.respond(404, "Not Found")

    def route_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Match the request; remember the handler on the connection or answer it.

        The ``process_request`` hook: the connection's thread, during the handshake.
        """
        from werkzeug.exceptions import NotFound  # noqa: PLC0415 - optional dependency
        from werkzeug.routing import RequestRedirect  # noqa: PLC0415

        adapter = self.url_map.bind(
            server_name=self.get_server_name(connection, request), url_scheme=self.url_scheme
        )
        target = urllib.parse.urlparse(request.path)
        try:
            handler, kwargs = adapter.match(path_info=target.path, query_args=target.query)
        except RequestRedirect as redirect:
            return self.redirect(connection, redirect.new_url)
        except NotFound:
            return self.not_found(connection)
        connection.handler = handler  # type: ignore[attr-defined]
        connection.handler_kwargs = kwargs  # type: ignore[attr-defined]
        return None

    def handler(self, connection: ServerConnection) -> Any:
        """Run the handler ``route_request`` matched, with the URL's values (its thread)."""
        routed: Any = connection
        return routed.handler(connection, **routed.handler_kwargs)


def _routed_class(base: Any) -> Any:
    """``base`` (a ServerConnection class) with room for the match, as websockets' has."""
    if not isinstance(base, type):
        return base  # a factory of the user's: it gives what it gives
    return type(f"Routed{base.__name__}", (base,), {"__slots__": ("handler", "handler_kwargs")})


def route(
    url_map: Any,
    *args: Any,
    server_name: str | None = None,
    ssl: ssl_module.SSLContext | Literal[True] | None = None,
    create_router: type[Router] | None = None,
    **kwargs: Any,
) -> Server:
    """Serve the handlers of ``url_map`` (a werkzeug ``Map``); the rest as ``serve()``.

    ``server_name`` is the host redirects name (default: the request's
    ``Host``); ``ssl=True`` builds ``wss://`` redirects behind a proxy that
    terminates TLS (an ``SSLContext`` serves TLS, as for ``serve()``).
    ``create_router`` a ``Router`` subclass. Call it from any thread.
    """
    try:
        import werkzeug.routing  # noqa: F401, PLC0415 - optional dependency
    except ImportError:  # pragma: no cover - the test extra has it (Flask brings it)
        raise ImportError("route() needs werkzeug: pip install werkzeug") from None
    url_scheme = "ws" if ssl is None else "wss"
    if ssl is not True and ssl is not None:
        kwargs["ssl"] = ssl
    router = (create_router or Router)(url_map, server_name, url_scheme)
    first = kwargs.pop("process_request", None)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if first is not None:
            response: Response | None = first(connection, request)
            if response is not None:
                return response
        return router.route_request(connection, request)

    kwargs["create_connection"] = _routed_class(kwargs.get("create_connection") or ServerConnection)
    if kwargs.pop("unix", False):
        return unix_serve(
            router.handler, kwargs.pop("path"), process_request=process_request, **kwargs
        )
    return serve(router.handler, *args, process_request=process_request, **kwargs)


def unix_route(url_map: Any, path: str | None = None, **kwargs: Any) -> Server:
    """``route()`` on the Unix socket at ``path``. Any thread."""
    if path is None:
        raise TypeError("unix_route() needs the path of the Unix socket")
    return route(url_map, unix=True, path=path, **kwargs)
