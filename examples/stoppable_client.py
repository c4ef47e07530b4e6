"""A client that reads messages in a loop until SIGTERM or Ctrl-C stops it.

    python examples/stoppable_client.py [URI]

``for message in connection`` ends when the connection closes, so stopping
the loop means closing the connection. Python runs signal handlers in the
main thread, the very thread that reads the socket here; ``close()`` waits
for the server's answer, which that thread would read, so the handler hands
``close()`` to a thread of its own. Here the client also sends SIGTERM to
itself after three replies, to stay short.
"""

from __future__ import annotations

import signal
import sys
import threading

import syncws


def main() -> None:
    uri = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8765/"
    with syncws.connect(uri) as connection:

        def stop(signum: int, frame: object) -> None:
            threading.Thread(target=connection.close).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        connection.send("message 0")
        for count, message in enumerate(connection, 1):  # ends once closed
            print(f"received {message!r}", flush=True)
            if count == 3:
                signal.raise_signal(signal.SIGTERM)  # as `kill PID` would
            else:
                connection.send(f"message {count}")
    print(f"stopped; close code {connection.close_code}")


if __name__ == "__main__":
    main()
