"""syncws in one script: a server in a background thread, a client, a few messages.

    python examples/hello.py

No other process needed: the server listens on a free port of 127.0.0.1.
"""

from __future__ import annotations

import threading

import syncws


def shout(connection: syncws.ServerConnection) -> None:
    """Answer each message in capitals, until the client leaves."""
    for message in connection:
        connection.send(str(message).upper())


def main() -> None:
    with syncws.serve(shout, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever).start()
        print(f"server listening on ws://127.0.0.1:{server.port}/")
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            for text in ("hello", "threads, not async", "goodbye"):
                client.send(text)
                print(f"client sent {text!r:24} received {client.recv(timeout=5)!r}")
            print(f"round trip of a ping: {client.ping().round_trip(timeout=5) * 1000:.2f} ms")
        print(f"client closed with code {client.close_code}")
    # Leaving the with block stopped the server and its background thread.
    print("server stopped")


if __name__ == "__main__":
    main()
