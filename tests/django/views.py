"""Views of the in-process Django tests: one per behaviour of ``@websocket``."""

from __future__ import annotations

import re
from typing import Any

from django.db import connection as database
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET

from syncws import ServerConnection
from syncws.django import hub, websocket


@websocket
def echo(request: HttpRequest, ws: ServerConnection, room: str) -> None:
    ws.send(
        f"room={room} q={request.GET.get('q')} cookie={request.COOKIES.get('flavour')} "
        f"header={request.headers.get('X-Test')} session={request.session.get('name')}"
    )
    for message in ws:
        ws.send(message)


def login(request: HttpRequest) -> HttpResponse:
    request.session["name"] = request.GET["name"]
    return HttpResponse("ok")


def members_only(request: HttpRequest, **kwargs: Any) -> HttpResponse | None:
    if "name" not in request.session:
        return HttpResponseForbidden("members only")
    return None


@require_GET  # an ordinary view decorator, outside: it answers before @websocket runs
@websocket(check=members_only)
def members(request: HttpRequest, ws: ServerConnection) -> None:
    ws.send(f"hello {request.session['name']}")


@websocket(origins=None)
def any_origin(request: HttpRequest, ws: ServerConnection) -> None:
    ws.send("any origin")


@websocket(origins=["https://app.example", re.compile(r"https://\w+\.app\.example")])
def listed_origins(request: HttpRequest, ws: ServerConnection) -> None:
    ws.send("listed origin")


@websocket(subprotocols=["chat"], compression=None, max_size=16)
def options(request: HttpRequest, ws: ServerConnection) -> None:
    ws.send(f"{ws.subprotocol}")
    for message in ws:
        ws.send(message)


@websocket
def transaction(request: HttpRequest, ws: ServerConnection) -> None:
    ws.send(f"in transaction: {database.in_atomic_block}")


@websocket
def fails(request: HttpRequest, ws: ServerConnection) -> None:
    raise ValueError("the view failed")


@websocket
def room(request: HttpRequest, ws: ServerConnection, name: str) -> None:
    hub().subscribe(ws, name)
    for message in ws:
        hub().publish(name, message)
