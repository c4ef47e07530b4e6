"""A flask-sock echo server under eventlet's wsgi, ported by changing one import.

flask-sock's own eventlet example has this shape; with syncws the only change
is ``from syncws.flask import Sock`` (it was ``from flask_sock import Sock``).
Run it: ``python examples/flask_sock/echo_eventlet.py`` (``PORT`` picks the port).
"""

import eventlet

eventlet.monkey_patch()  # first, before anything else is imported

import os  # noqa: E402

from eventlet import wsgi  # noqa: E402
from flask import Flask, render_template_string  # noqa: E402

from syncws.flask import Sock  # noqa: E402

app = Flask(__name__)
app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 25}

sock = Sock(app)

PAGE = """<!doctype html>
<input id="text"><button onclick="ws.send(text.value)">send</button><pre id="log"></pre>
<script>
const ws = new WebSocket(`ws://${location.host}/echo`);
ws.onmessage = (event) => { log.textContent += event.data + "\\n"; };
</script>
"""


@app.route("/")
def index() -> str:
    return render_template_string(PAGE)


@sock.route("/echo")
def echo(ws):  # ws: a SockConnection, simple-websocket's API
    while True:
        data = ws.receive()
        if data == "close":
            break
        ws.send(data)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    listener = eventlet.listen(("127.0.0.1", port))
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    wsgi.server(listener, app)
