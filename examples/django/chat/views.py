"""A chat room per URL: ``ws/<room>/`` for people with a nickname in their session.

Every message goes through the hub: with ``SYNCWS_REDIS_URL`` set, it reaches
the room's members in every gunicorn worker.
"""

from django.http import HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from syncws.django import hub, websocket

PAGE = """<!doctype html>
<title>chat</title>
<form method="post" action="/nickname/"><input name="name"> <button>join</button></form>
<pre id="log"></pre><input id="line" autofocus>
<script>
const ws = new WebSocket(`ws://${location.host}/ws/lobby/`);
ws.onmessage = (event) => { log.textContent += event.data + "\\n"; };
line.onkeydown = (event) => {
  if (event.key === "Enter") { ws.send(line.value); line.value = ""; }
};
</script>
"""


def index(request):
    return HttpResponse(PAGE)


@csrf_exempt  # an example: a real form would carry a CSRF token
@require_POST
def nickname(request):
    request.session["name"] = request.POST.get("name") or "anonymous"
    return redirect("/")


@csrf_exempt  # an example: a real endpoint would check who calls it
@require_POST
def announce(request, room):
    count = hub().publish(room, request.body.decode())
    return HttpResponse(f"sent to {count} here\n")


def has_nickname(request, room):
    """Run before the upgrade: no nickname, no WebSocket."""
    if "name" not in request.session:
        return HttpResponseForbidden("pick a nickname first\n")
    return None


@websocket(check=has_nickname)
def chat(request, ws, room):
    name = request.session["name"]
    hub().subscribe(ws, room)  # left by itself when ws closes
    hub().wait_for_subscribers(room)  # with Redis: every worker's messages reach us now
    ws.send(f"welcome to {room}, {name}")
    for message in ws:
        hub().publish(room, f"{name}: {message}")
