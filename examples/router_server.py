"""websockets.sync's router and basic_auth, in syncws: a handler per URL, a password.

    python examples/router_server.py [--host HOST] [--port PORT]

- ws://demo:secret@localhost:8765/ echoes;
- ws://demo:secret@localhost:8765/rooms/NAME greets the user in room NAME,
  then echoes; ``/lobby`` redirects (302) to ``/rooms/lobby``;
- any other path gets 404, and a client without the credentials 401.

A program written for ``websockets.sync.router`` and
``websockets.sync.server.basic_auth`` ports by changing two imports (see
docs/migrating.rst). werkzeug does the URL matching (Flask brings it).
Ctrl-C or SIGTERM stops the server: every client gets 1001.
"""

from __future__ import annotations

import argparse
import contextlib
import signal

from werkzeug.routing import Map, Rule

import syncws
from syncws.router import route


def echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def room(connection: syncws.ServerConnection, name: str) -> None:
    # basic_auth() set the user's name before the handler runs.
    connection.send(f"{connection.username} joined {name}")
    echo(connection)


URL_MAP = Map(
    [
        Rule("/", endpoint=echo),
        Rule("/rooms/<name>", endpoint=room),
        Rule("/lobby", redirect_to="/rooms/lobby"),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()
    check = syncws.basic_auth(realm="demo", credentials=("demo", "secret"))
    with route(URL_MAP, args.host, args.port, process_request=check) as server:
        signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
        print(f"listening on ws://demo:secret@{args.host}:{server.port}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
