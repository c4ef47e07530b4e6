"""A client that survives server restarts: it reconnects with backoff.

    python examples/reconnecting_client.py [URI]

Each turn of the ``for`` loop gets a fresh connection. When the server goes
away, ``recv()`` raises ``ConnectionClosed``; the loop goes on, waits a
little (exponential backoff with jitter) and connects again. Ctrl-C or
SIGTERM stops it; here it also stops after three replies, to stay short.
"""

from __future__ import annotations

import signal
import sys

import syncws


def main() -> None:
    uri = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8765/"
    connections = syncws.reconnect(uri)
    # stop() is safe in a signal handler: the loop ends, the connection closes with 1000.
    signal.signal(signal.SIGTERM, lambda signum, frame: connections.stop())
    replies = 0
    for connection in connections:
        try:
            while replies < 3:
                connection.send(f"message {replies}")
                print(f"received {connection.recv()!r}")
                replies += 1
        except syncws.ConnectionClosed as exc:
            print(f"connection lost ({exc}); reconnecting", flush=True)
            continue
        break  # leaving the loop closes the connection normally


if __name__ == "__main__":
    main()
