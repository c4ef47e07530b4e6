"""``Sock``: a drop-in for flask-sock, over syncws's WSGI upgrade (see ``syncws.flask``).

A flask-sock program ports by changing its imports: ``Sock(app)`` or
``init_app(app)``, ``@sock.route(path, bp=None, **kwargs)``, handlers
``handler(ws, **url_values)``, simple-websocket's ``ws.receive(timeout)``,
``ws.send(data)``, ``ws.close(reason, message)``, ``ws.connected`` and
``ConnectionClosed`` (``reason``: the close code, ``message``: the text),
and the ``SOCK_SERVER_OPTIONS`` config dict.

Threads. The handler runs in a thread of its own, started for the
connection once the 101 is sent, inside a copy of the request's context
(``request``, ``session``, ``g``); the server's worker goes back to serving
HTTP (see ``syncws.wsgi``). That thread calls ``receive()``. ``send()`` and
``close()`` may be called from any thread.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flask

from .simple_websocket import ConnectionClosed, Server
from .threaded.origins import origin_policy
from .threaded.server import ServerConnection
from .wsgi import Upgrade, check_runner, check_server, upgrade

__all__ = [
    "ConnectionClosed",
    "Sock",
    "SockConnection",
    "flask_response",
    "in_request_context",
    "refuse_unsupported_servers",
    "sock_options",
]


class SockConnection(Server):
    """The ``ws`` of a ``Sock`` handler: simple-websocket's ``Server`` over a ``ServerConnection``.

    As in flask-sock, whose ``ws`` is a ``simple_websocket.Server``: ``receive()``,
    ``send()``, ``close()``, ``connected``, ``close_reason``... (see
    ``syncws.simple_websocket``). Every other attribute is the
    ``ServerConnection``'s (``recv()``, ``ping()``, ``request``,
    ``remote_address``...): ``connection`` is that object itself.
    """


# SOCK_SERVER_OPTIONS: simple-websocket's Server options, translated, and upgrade()'s own.
_SYNCWS_OPTIONS = frozenset(inspect.signature(upgrade).parameters) - {"environ", "handler"}
_IGNORED = frozenset({"receive_bytes"})  # a read size: syncws sizes its reads itself
_GREEN = frozenset({"thread_class", "event_class", "selector_class"})


def sock_options(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Translate ``SOCK_SERVER_OPTIONS`` into ``syncws.wsgi.upgrade()``'s options.

    ``max_message_size`` becomes ``max_size``; ``ping_interval`` also sets
    ``ping_timeout`` to the same value unless given (simple-websocket closes
    when no pong came by the next ping); ``receive_bytes`` is ignored. Raise
    ``ValueError`` for the green-thread hooks, ``TypeError`` for unknown keys.
    """
    options: dict[str, Any] = {}
    for name, value in (config or {}).items():
        if name == "max_message_size":
            options["max_size"] = value
        elif name in _IGNORED:
            continue
        elif name in _GREEN:
            if value is not None:
                raise ValueError(
                    f"SOCK_SERVER_OPTIONS[{name!r}] isn't supported: syncws uses the threading "
                    "module, which gevent's and eventlet's monkey-patching make green; patch "
                    "first and leave this option out"
                )
        elif name in _SYNCWS_OPTIONS:
            options[name] = value
        else:
            raise TypeError(f"unknown SOCK_SERVER_OPTIONS key {name!r}")
    if "max_message_size" in (config or {}) and "max_size" in (config or {}):
        raise TypeError("SOCK_SERVER_OPTIONS: give max_message_size or max_size, not both")
    if "ping_interval" in options and "ping_timeout" not in options:
        options["ping_timeout"] = options["ping_interval"]
    if "origins" in options:
        options["origins"] = origin_policy(options["origins"])
    return options


def in_request_context(
    handler: Callable[[ServerConnection], Any],
) -> Callable[[ServerConnection], Any]:
    """``handler`` to run in another thread, inside a copy of this request's context.

    ``flask.request``, ``session`` and ``current_app`` are the request's; ``g``
    starts with the values the request's ``g`` holds now (what
    ``before_request`` functions put there). Call it in the request's thread
    (it copies that thread's context); the returned function runs in another.
    """
    request_context = flask.globals.request_ctx.copy()
    g_values = dict(vars(flask.g._get_current_object()))

    def run(connection: ServerConnection) -> Any:
        with request_context.app.app_context() as app_context:
            vars(app_context.g).update(g_values)
            with request_context:
                return handler(connection)

    return run


def refuse_unsupported_servers(app: flask.Flask) -> None:
    """Refuse the runner now and, at each request until one passes, a server that can't.

    ``syncws.wsgi.check_runner()`` and ``check_server()``: a server that can't
    hand connections over fails at the application's first request, plain
    HTTP included, rather than at the first upgrade. Call it when routes are
    registered (the registering thread).
    """
    check_runner()
    checked: list[bool] = []

    def check() -> None:
        if not checked:
            check_server(flask.request.environ)
            checked.append(True)

    app.before_request(check)


def flask_response(outcome: Upgrade) -> flask.Response:
    """The Flask response for ``upgrade()``'s outcome: a refusal, or the end of the WebSocket."""
    if not outcome.accepted:
        status = int(outcome.status.split()[0])
        return flask.Response(b"".join(outcome.body), status, outcome.headers)
    # Nothing of this response is written: 101 is for the access log, and
    # the body ends the request (see syncws.wsgi).
    return _Upgraded(outcome.body, 101, direct_passthrough=True)


class _Upgraded(flask.Response):
    """The response of a finished WebSocket: its status, and the body that ends the request."""

    def get_app_iter(self, environ: Any) -> Any:
        # Werkzeug would replace a 1xx response's body with an empty one.
        return self.response


Route = Callable[..., Any]


class Sock:
    """flask-sock's ``Sock``: WebSocket routes whose handlers get a ``SockConnection``.

    ``Sock(app)`` or ``Sock()`` then ``init_app(app)``; routes declared
    before ``init_app`` are added then. Options come from the app's
    ``SOCK_SERVER_OPTIONS`` config dict (see ``sock_options()``), read at
    each connection.
    """

    def __init__(self, app: flask.Flask | None = None) -> None:
        #: The application given to ``Sock()`` or ``init_app()`` (the last one).
        self.app: flask.Flask | None = None
        self._pending: list[tuple[str, dict[str, Any], Route]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Add the routes declared so far to ``app``; check its ``SOCK_SERVER_OPTIONS``."""
        sock_options(app.config.get("SOCK_SERVER_OPTIONS"))
        refuse_unsupported_servers(app)
        self.app = app
        for path, kwargs, view in self._pending:
            app.route(path, websocket=True, **kwargs)(view)

    def route(
        self, path: str, bp: flask.Blueprint | None = None, **kwargs: Any
    ) -> Callable[[Route], Route]:
        """Decorate ``handler(ws, **url_values)`` to serve WebSockets at ``path``.

        ``bp`` puts the route on a blueprint; ``kwargs`` go to Flask's
        ``route()`` (``endpoint``, ``defaults``...). The handler runs in a
        thread of its own, in a copy of the request's context; when it
        returns (or lets ``ConnectionClosed`` through) the connection is
        closed with 1000, and with 1011 if it raises anything else.
        """

        def decorator(handler: Route) -> Route:
            @functools.wraps(handler)
            def view(*args: Any, **url_values: Any) -> flask.Response:
                options = sock_options(flask.current_app.config.get("SOCK_SERVER_OPTIONS"))
                environ = flask.request.environ

                def run(connection: ServerConnection) -> None:
                    # flask-sock's handlers end with ConnectionClosed: a normal end.
                    with contextlib.suppress(ConnectionClosed):
                        handler(SockConnection(connection, environ), *args, **url_values)

                return flask_response(upgrade(environ, in_request_context(run), **options))

            check_runner()
            if bp is not None:
                return bp.route(path, websocket=True, **kwargs)(view)
            if self.app is not None:
                return self.app.route(path, websocket=True, **kwargs)(view)
            self._pending.append((path, kwargs, view))
            return view

        return decorator
