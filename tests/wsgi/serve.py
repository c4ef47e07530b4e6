"""Serve tests.wsgi.apps with Werkzeug: ``python -m tests.wsgi.serve APP [--debug]``.

Prints ``listening on PORT`` once ready; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

from werkzeug.debug import DebuggedApplication
from werkzeug.serving import make_server

from . import apps


def main() -> None:
    app = getattr(apps, sys.argv[1])
    if "--debug" in sys.argv:
        app = DebuggedApplication(app, evalex=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # shutdown() waits for serve_forever() to return: call it from another thread.
    signal.signal(
        signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start()
    )
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
