"""Routes on the request path, plain HTTP beside WebSockets on one port, and headers.

    python examples/routing_server.py [--host HOST] [--port PORT] [--token TOKEN]

- ws://localhost:8765/echo echoes, ws://localhost:8765/clock sends the time
  every second, and any other path gets 404 before the upgrade.
- http://localhost:8765/healthz answers plain HTTP (a load balancer's health
  check) on the same port: ``curl localhost:8765/healthz``.
- With --token, a client must send ``Authorization: Bearer TOKEN`` (401 otherwise).
- Every response carries an ``X-Request-Id`` header, and the server prints
  each client's address, taken from X-Forwarded-For when a proxy it trusts
  sent it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hmac
import signal
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import syncws

#: Proxies whose X-Forwarded-For header we believe (nginx on this machine, say).
TRUSTED_PROXIES = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def clock(connection: syncws.ServerConnection) -> None:
    """Send the time every second; ``recv(timeout=1)`` waits, and notices a close."""
    while True:
        connection.send(time.strftime("%H:%M:%S"))
        with contextlib.suppress(TimeoutError):
            connection.recv(timeout=1)  # messages from the client are ignored


ROUTES: dict[str, Callable[[syncws.ServerConnection], None]] = {"/echo": echo, "/clock": clock}


def client_address(connection: syncws.ServerConnection) -> str:
    """The client's IP address; behind a trusted proxy, the one the proxy saw."""
    assert connection.request is not None
    peer = str(connection.remote_address[0])
    forwarded = connection.request.headers.get_all("X-Forwarded-For")
    if forwarded and peer in TRUSTED_PROXIES:
        # The last entry is the one our proxy added; earlier ones are the client's word.
        return forwarded[-1].split(",")[-1].strip()
    return peer


def process_request(
    connection: syncws.ServerConnection, request: syncws.Request, *, token: str | None
) -> syncws.Response | None:
    """Runs before the upgrade: answer plain HTTP, refuse, or return None to go on."""
    path = urlsplit(request.path).path
    if path == "/healthz":
        return connection.respond(200, "OK\n")
    if path not in ROUTES:
        return connection.respond(404, f"No WebSocket at {path}; try /echo or /clock.\n")
    if token is not None:
        given = request.headers.get_all("Authorization")
        if len(given) != 1 or not hmac.compare_digest(given[0], f"Bearer {token}"):
            return connection.respond(401, "Missing or wrong token.\n")
    return None


def process_response(
    connection: syncws.ServerConnection, request: syncws.Request, response: syncws.Response
) -> None:
    """Runs on every response, the 101 and the refusals: add a header."""
    response.headers["X-Request-Id"] = str(connection.id)


def dispatch(
    connection: syncws.ServerConnection,
    routes: dict[str, Callable[[syncws.ServerConnection], None]],
) -> None:
    """The handler: ``routes`` is an argument of ours, bound with functools.partial."""
    assert connection.request is not None
    path = urlsplit(connection.request.path).path
    print(f"{client_address(connection)} opened {path}", flush=True)
    routes[path](connection)  # process_request let only known paths through


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN")
    args = parser.parse_args()
    with syncws.serve(
        functools.partial(dispatch, routes=ROUTES),
        args.host,
        args.port,
        process_request=functools.partial(process_request, token=args.token),
        process_response=process_response,
    ) as server:
        signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
        print(f"listening on ws://localhost:{server.port}/echo", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
