"""A chat room: every message a client sends goes to every connected client.

    python examples/chat_server.py [--port PORT]

Connect two clients (``examples/echo_client.py`` is one) and each sees what
the other sends.
"""

from __future__ import annotations

import argparse
import contextlib
import signal

import syncws


def chat(connection: syncws.ServerConnection) -> None:
    """Relay each message of this client to everyone in the room, itself included."""
    for message in connection:
        # server.connections holds the open connections: no global set needed.
        for member in connection.server.connections:
            # A member that can't keep up for a second misses this message.
            with contextlib.suppress(syncws.ConnectionClosed, TimeoutError):
                member.send(message, timeout=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with syncws.serve(chat, args.host, args.port) as server:
        signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
        print(f"listening on ws://localhost:{server.port}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
