"""Django integration: a WebSocket is a view, routed and protected like any other view.

.. code-block:: python

    from syncws.django import websocket

    @websocket
    def chat(request, ws, room):       # HttpRequest after middleware; a ServerConnection
        for message in ws:
            ws.send(f"{request.user}: {message}")

    urlpatterns = [path("ws/<room>/", chat)]

What it guards. Middleware (sessions, authentication...) runs before the
upgrade, as for any view; ``check(request, **kwargs)`` and any view decorator
put around ``@websocket`` (``login_required``...) may refuse with an
``HttpResponse`` before anything is taken over. The browser sends the
session cookie with every upgrade, from any site, so ``Origin`` is checked
against ``ALLOWED_HOSTS`` and ``CSRF_TRUSTED_ORIGINS`` unless the view passes
``origins=`` (a list, a predicate, or ``None`` for no check).

Threads. The view runs in the thread ``syncws.wsgi.upgrade()`` gives the
handler (one of syncws's, once the server's worker is free again; the
request's own under TLS); the database connections that thread opened are
closed when the view returns. ``check`` runs in the request's thread. The
hub (``hub()``) is created once per process, at first use, from
``settings.SYNCWS_REDIS_URL``. One lock guards that creation; it
is never held while calling Django or the hub.

Django is imported lazily: ``import syncws`` never needs it.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from . import wsgi
from .exceptions import UnsupportedServer
from .pubsub.hub import Hub
from .threaded.options import ServerOptions
from .threaded.server.connection import ServerConnection
from .wsgi import Upgrade, upgrade

__all__ = ["ALLOWED_HOSTS", "allowed_origin", "hub", "websocket"]

View = Callable[..., Any]
Check = Callable[..., HttpResponseBase | None]


class _AllowedHosts:
    """The default of ``origins=``: what ``ALLOWED_HOSTS`` and ``CSRF_TRUSTED_ORIGINS`` admit."""

    def __repr__(self) -> str:
        return "ALLOWED_HOSTS"


#: ``origins=ALLOWED_HOSTS`` (the default): see ``allowed_origin()``.
ALLOWED_HOSTS: Any = _AllowedHosts()

# upgrade()'s options, which the decorator and settings.SYNCWS_OPTIONS may set.
_OPTIONS = frozenset(inspect.signature(upgrade).parameters) - {"environ", "handler"}


def allowed_origin(origin: str | None) -> bool:
    """True if ``origin`` may open a WebSocket under the default policy (any thread).

    No ``Origin`` header: True (browsers always send one; other clients can
    write any). Otherwise its host must be in ``ALLOWED_HOSTS`` (with the
    defaults Django uses when ``DEBUG`` is on and the list is empty), or the
    origin must be listed in ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com``
    admits subdomains), as Channels' ``AllowedHostsOriginValidator`` and
    Django's CSRF check do.
    """
    if origin is None:
        return True
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return False  # "null" (a sandboxed page, a file://) or garbage
    trusted: list[str] = list(getattr(settings, "CSRF_TRUSTED_ORIGINS", []))
    if origin in trusted:
        return True
    for entry in trusted:
        entry_parts = urlsplit(entry)
        if (
            entry_parts.scheme == parts.scheme
            and entry_parts.netloc.startswith("*")
            and is_same_domain(parts.netloc, entry_parts.netloc[1:])
        ):
            return True
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, allowed_hosts)


def websocket(
    view: View | None = None,
    *,
    check: Check | None = None,
    origins: Any = ALLOWED_HOSTS,
    **options: Any,
) -> Any:
    """Turn ``view(request, ws, **kwargs)`` into a Django view that serves a WebSocket.

    ``@websocket`` or ``@websocket(check=..., origins=..., subprotocols=[...],
    compression=None, max_size=..., ping_interval=...)``: the options of
    ``serve()`` for one connection (``syncws.wsgi.upgrade()``'s), over those
    of the ``SYNCWS_OPTIONS`` setting. ``check(request, **kwargs)`` runs
    before the upgrade; the response it returns, if any, is the answer.
    ``origins`` defaults to ``ALLOWED_HOSTS`` (see ``allowed_origin()``), or
    to ``SYNCWS_OPTIONS["origins"]`` if the setting has one.

    The view gets the request after middleware, a ``ServerConnection`` and
    the URL's values. When it returns, the connection closes (1000; 1011 if
    it raised). A request that isn't an upgrade gets 426; a refused origin 403.
    Under a server that can't hand connections over (waitress, mod_wsgi),
    ``UnsupportedServer`` is raised when decorating, or at the first request.
    Decoration happens at import time, in any thread.
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown option(s) for @websocket: {', '.join(sorted(unknown))}")
    if check is not None and not callable(check):
        raise TypeError(f"check is a function(request, **kwargs) or None, not {check!r}")
    # Checked once here, as serve() does: a wrong value fails at import, not at the first client.
    ServerOptions(
        **{name: value for name, value in options.items() if name != "logger"},
        origins=None if origins is ALLOWED_HOSTS else origins,
    )

    def decorate(function: View) -> View:
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                f"@websocket takes a plain function: {function.__qualname__} is async "
                "(the view runs in a thread of its own; write it with def)"
            )
        # Under a server that can't hand connections over (waitress...): fail at startup.
        wsgi.check_runner()

        @functools.wraps(function)
        def django_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            environ = getattr(request, "environ", None)
            if environ is None:
                raise UnsupportedServer(
                    "syncws.django serves WebSockets from WSGI servers (runserver, gunicorn...): "
                    "this request came through ASGI, where Channels serves them"
                )
            wsgi.check_server(environ)  # the same, by the request, for any server
            if check is not None:
                refusal = check(request, *args, **kwargs)
                if refusal is not None:
                    return refusal
            merged = dict(getattr(settings, "SYNCWS_OPTIONS", {})) | options
            # The default policy, unless the view or SYNCWS_OPTIONS gives another one.
            policy = merged.get("origins", ALLOWED_HOSTS) if origins is ALLOWED_HOSTS else origins
            merged["origins"] = allowed_origin if policy is ALLOWED_HOSTS else policy

            def handler(connection: ServerConnection) -> None:
                try:
                    function(request, connection, *args, **kwargs)
                finally:
                    # A thread that lives as long as the WebSocket mustn't pin its
                    # database connections (Django's request_finished closes those
                    # of the request's thread only).
                    connections.close_all()

            return _response(upgrade(environ, handler, **merged))

        # A WebSocket inside a transaction for its whole life would hold its locks:
        # ATOMIC_REQUESTS never wraps this view, whatever the database.
        django_view._non_atomic_requests = _EveryDatabase()  # type: ignore[attr-defined]
        return django_view

    if view is not None:
        return decorate(view)
    return decorate


class _EveryDatabase(frozenset[str]):
    """Every database alias, for Django's ``_non_atomic_requests`` test (``alias in ...``)."""

    def __contains__(self, alias: object) -> bool:
        return True


def _response(outcome: Upgrade) -> HttpResponseBase:
    """The Django response for ``upgrade()``'s outcome: a refusal, or the end of the WebSocket."""
    if not outcome.accepted:
        status = int(outcome.status.split()[0])
        # outcome.headers has no hop-by-hop header (WSGI forbids them: runserver's
        # wsgiref would answer 500).
        return HttpResponse(b"".join(outcome.body), status=status, headers=outcome.headers)
    return _Upgraded(outcome)


class _Upgraded(StreamingHttpResponse):  # type: ignore[misc]
    """A finished WebSocket: status 101 for the access log; its body ends the request.

    Middleware may wrap ``streaming_content`` (GZip does): it is never read.
    The server iterates the response itself, which hands over the body that
    ``upgrade()`` gave (see ``syncws.wsgi``).
    """

    def __init__(self, outcome: Upgrade) -> None:
        super().__init__((), status=101)
        self._outcome = outcome
        # The server closes the response once written: the body must hear it.
        close = getattr(outcome.body, "close", None)
        if close is not None:
            self._resource_closers.append(close)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._outcome.body)


_hub_lock = threading.Lock()
_hub: list[Hub] = []


def hub() -> Hub:
    """This process's ``Hub``, created at first use (any thread).

    With ``settings.SYNCWS_REDIS_URL``, it has a ``RedisBackend`` there, so
    that a message published in one gunicorn worker reaches the subscribers of
    every worker; without, it serves this process only. Created in the process
    that uses it, never in gunicorn's master (``--preload`` is safe).
    """
    with _hub_lock:
        if not _hub:
            url = getattr(settings, "SYNCWS_REDIS_URL", None)
            if url:
                from .pubsub.redis_backend import RedisBackend  # noqa: PLC0415 - needs redis

                _hub.append(Hub(RedisBackend(url)))
            else:
                _hub.append(Hub())
        return _hub[0]
