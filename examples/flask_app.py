"""A Flask application with a WebSocket route beside its HTTP routes, on one port.

    pip install '.[flask]'    # from the checkout of syncws (not on PyPI yet)
    python examples/flask_app.py [--port PORT]

ws://localhost:5000/ws echoes; ``curl -d 'hello, all' localhost:5000/broadcast``
sends a message to every connected WebSocket from an ordinary HTTP view.
In production, run it under gunicorn: ``gunicorn -c deploy/gunicorn.conf.py
flask_app:app`` (see docs/deployment.rst).

Each gunicorn worker is a process with WebSockets of its own, which a plain
broadcast can't reach from another worker. With ``REDIS_URL`` set
(``REDIS_URL=redis://127.0.0.1:6379/0``, ``pip install '.[redis]'`` from the checkout), the
hub sends each broadcast through Redis to every process; without it, run one
worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from flask import Flask, request
from werkzeug.serving import make_server

import syncws
from syncws import wsgi
from syncws.flask import Sockets

# Redis only if asked for: RedisBackend imports the redis package when created.
REDIS_URL = os.environ.get("REDIS_URL")
backend = syncws.RedisBackend(REDIS_URL) if REDIS_URL else None

app = Flask(__name__)
sockets = Sockets(app, hub=syncws.Hub(backend), ping_interval=20)


@sockets.route("/ws")
def echo(ws: syncws.ServerConnection) -> None:
    """Each WebSocket client follows the broadcasts and gets its messages back."""
    sockets.hub.subscribe(ws, "everyone")  # left by itself when ws closes
    if backend is not None:
        backend.wait_subscribed(timeout=5)  # hear the other processes from the start
    for message in ws:
        ws.send(message)


@app.get("/")
def index() -> str:
    return f"{len(sockets.connections)} WebSocket clients connected to this process\n"


@app.post("/broadcast")
def announce() -> tuple[str, int]:
    text = request.get_data(as_text=True)
    try:
        count = sockets.hub.publish("everyone", text)  # never blocks on a slow client
    except syncws.PubSubError as exc:  # this process's clients got it all the same
        return f"not sent to the other processes: {exc}\n", 503
    others = " and to the other processes through Redis" if backend is not None else ""
    return f"sent to {count} clients of this process{others}\n", 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    # Werkzeug's threaded server, as `flask run` uses, started here to print the port.
    server = make_server(args.host, args.port, app, threaded=True)

    def stop(signum: int, frame: object) -> None:
        wsgi.shutdown_all()  # 1001 to every WebSocket client
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on ws://{args.host}:{server.server_port}/ws", flush=True)
    server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
