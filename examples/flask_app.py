"""A Flask application with a WebSocket route beside its HTTP routes, on one port.

    pip install 'syncws[flask]'
    python examples/flask_app.py [--port PORT]

ws://localhost:5000/ws echoes; ``curl -d 'hello, all' localhost:5000/broadcast``
sends a message to every connected WebSocket from an ordinary HTTP view.
In production, run it under gunicorn: ``gunicorn -k gthread --threads 100
flask_app:app`` (see docs/wsgi.rst).
"""

from __future__ import annotations

import argparse
import signal
import threading

from flask import Flask, request
from werkzeug.serving import make_server

import syncws
from syncws import wsgi
from syncws.flask import Sockets

app = Flask(__name__)
sockets = Sockets(app, ping_interval=20)


@sockets.route("/ws")
def echo(ws: syncws.ServerConnection) -> None:
    """Each WebSocket client gets its messages back."""
    for message in ws:
        ws.send(message)


@app.get("/")
def index() -> str:
    return f"{len(sockets.connections)} WebSocket clients connected\n"


@app.post("/broadcast")
def announce() -> str:
    count = sockets.broadcast(request.get_data(as_text=True))
    return f"sent to {count} clients\n"


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
