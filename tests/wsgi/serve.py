"""Serve tests.wsgi.apps with a WSGI server: ``python -m tests.wsgi.serve APP [SERVER] [--debug]``.

SERVER is ``werkzeug`` (the default, threaded), ``wsgiref`` (one thread),
``gevent`` (pywsgi, monkey-patched) or ``eventlet`` (its wsgi, monkey-patched).
Prints ``listening on PORT`` once ready; stops on SIGTERM.
"""

# ruff: noqa: E402, PLC0415
from __future__ import annotations

import sys

SERVER = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("-") else "werkzeug"
# Green servers: patch before anything else is imported, as their users do.
if SERVER == "gevent":
    from gevent import monkey

    monkey.patch_all()
elif SERVER == "eventlet":
    import eventlet

    eventlet.monkey_patch()

import signal
import threading
from typing import Any

from . import apps


def main() -> None:
    app: Any = getattr(apps, sys.argv[1])
    if SERVER == "gevent":
        serve_gevent(app)
    elif SERVER == "eventlet":
        serve_eventlet(app)
    elif SERVER == "wsgiref":
        serve_wsgiref(app)
    else:
        serve_werkzeug(app)


def serve_werkzeug(app: Any) -> None:
    from werkzeug.debug import DebuggedApplication
    from werkzeug.serving import make_server

    if "--debug" in sys.argv:
        app = DebuggedApplication(app, evalex=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # shutdown() waits for serve_forever() to return: call it from another thread.
    signal.signal(
        signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start()
    )
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()


def serve_wsgiref(app: Any) -> None:
    import wsgiref.simple_server

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app)
    signal.signal(
        signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start()
    )
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()
    server.server_close()


def serve_gevent(app: Any) -> None:
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", 0), app)
    server.start()
    signal.signal(signal.SIGTERM, lambda signum, frame: server.stop(timeout=1))
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()


def serve_eventlet(app: Any) -> None:
    import eventlet.wsgi

    listener = eventlet.listen(("127.0.0.1", 0))
    server = eventlet.spawn(eventlet.wsgi.server, listener, app)
    stop = threading.Event()  # green, as the patched threading module makes it
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    stop.wait()
    server.kill()
    listener.close()


if __name__ == "__main__":
    main()
