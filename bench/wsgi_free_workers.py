"""gunicorn gthread with 4 threads, 200 WebSockets open: how fast is a plain GET answered?

Run:  python bench/wsgi_free_workers.py [--websockets 200] [--threads 4] [--gets 50]

Starts gunicorn (``-k gthread --threads 4``, one worker) on tests.wsgi.apps's
Flask app, opens ``--websockets`` WebSockets to its echo route (each sends a
message and gets it back, so all of them are open and served), then times
``--gets`` plain GETs of ``/`` on fresh connections while they stay open.
Printed: the GETs' median, p99 and max in milliseconds, and the threads of
the worker (every WebSocket has a handler thread of syncws; gunicorn keeps
its 4). Goal (issue 27): < 100 ms. Not a test: the figures vary with the
machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import syncws  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--websockets", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--gets", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args()

    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "pip install -e '.[test]'"
    command = [gunicorn, "--bind", "127.0.0.1:0", "-k", "gthread"]
    command += ["--threads", str(options.threads), "tests.wsgi.apps:flask_app"]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    port = 0
    worker = 0
    for line in process.stdout:
        if match := re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
        if match := re.search(r"Booting worker with pid: (\d+)", line):
            worker = int(match.group(1))
        if port and worker:
            break
    try:
        with contextlib.ExitStack() as stack:
            clients = []
            for number in range(options.websockets):
                client = syncws.connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10)
                stack.enter_context(client)
                client.send(f"hello {number}")
                clients.append(client)
            for number, client in enumerate(clients):
                assert client.recv(timeout=10) == f"hello {number}"
            threads = len(list(Path(f"/proc/{worker}/task").iterdir()))
            times = []
            for _ in range(options.gets):
                started = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                    assert answer.read() == b"hello from Flask\n"
                times.append((time.perf_counter() - started) * 1000)
            for number, client in enumerate(clients):  # still open, still served
                client.send(f"again {number}")
                assert client.recv(timeout=10) == f"again {number}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    times.sort()
    figures = {
        "websockets": options.websockets,
        "gunicorn_threads": options.threads,
        "worker_threads": threads,
        "get_ms_median": round(statistics.median(times), 2),
        "get_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "get_ms_max": round(times[-1], 2),
    }
    if options.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>18}: {value}")


if __name__ == "__main__":
    main()
