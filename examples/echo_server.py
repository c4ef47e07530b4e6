"""An echo server: every message comes back to its sender.

    python examples/echo_server.py [--host HOST] [--port PORT]

Each client gets its own thread, which runs ``echo()``. Ctrl-C or SIGTERM
stops the server cleanly: every client gets close code 1001 ("going away").
"""

from __future__ import annotations

import argparse
import contextlib
import signal

import syncws


def echo(connection: syncws.ServerConnection) -> None:
    """Handle one client: the loop ends when the client closes the connection."""
    for message in connection:
        connection.send(message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="default: every interface, IPv4 and IPv6")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()
    with syncws.serve(echo, args.host, args.port) as server:
        # shutdown() is safe in a signal handler: serve_forever() does the rest.
        signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
        print(f"listening on ws://localhost:{server.port}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
