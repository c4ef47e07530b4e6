"""An echo client: send a few messages and print what comes back.

    python examples/echo_client.py [URI] [MESSAGE ...]

Start ``examples/echo_server.py`` first; URI defaults to ws://localhost:8765/.
"""

from __future__ import annotations

import sys

import syncws


def main() -> None:
    uri = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8765/"
    messages = sys.argv[2:] or ["Hello, world!", "How are you?"]
    # The with block closes the connection (code 1000) when it ends.
    with syncws.connect(uri) as connection:
        for message in messages:
            connection.send(message)
            reply = connection.recv(timeout=10)
            print(f"sent {message!r}, received {reply!r}")


if __name__ == "__main__":
    main()
