"""A chat with rooms: each message goes to everyone in the sender's room.

    python examples/chat_server.py [--port PORT] [--redis redis://127.0.0.1:6379/0]

The path picks the room: ws://localhost:8765/kitchen joins "kitchen", and
ws://localhost:8765/ joins "lobby". With --redis, run as many processes as
you like (on different ports): a message reaches the room's members in all.
"""

from __future__ import annotations

import argparse
import contextlib
import signal

import syncws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis", metavar="URL", help="share rooms with other processes")
    args = parser.parse_args()

    backend = syncws.RedisBackend(args.redis) if args.redis else None
    with syncws.Hub(backend) as hub:

        def chat(connection: syncws.ServerConnection) -> None:
            """Join the room named by the path, then relay every message to it."""
            assert connection.request is not None
            room = connection.request.path.strip("/").split("?")[0] or "lobby"
            hub.subscribe(connection, room)  # left by itself when the connection closes
            if backend is not None:
                backend.wait_subscribed(timeout=5)  # so we hear the other processes at once
            for message in connection:
                hub.publish(room, message)  # never blocks on a slow member

        with syncws.serve(chat, args.host, args.port) as server:
            signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
            print(f"listening on ws://localhost:{server.port}/", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
