"""WebSockets that keep the request's thread: TLS ended by the server, sockets os.dup() can't take.

Werkzeug in-process (with trustme's certificates for TLS); Windows' sockets
are simulated by turning ``_handoff.CAN_DUPLICATE`` off.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading

import pytest
import trustme
from werkzeug.serving import make_server

import syncws
from syncws import _handoff, _held, wsgi

from ..threaded.helpers import WAIT
from . import apps
from .test_wsgi import check_only_frames_after_101, environ_for, werkzeug

pytestmark = pytest.mark.timeout(60)


def test_unthreaded_servers_over_tls_are_refused() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with (
        socket.socket() as raw,
        context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False) as tls,
    ):
        for key in ("gunicorn.socket", "werkzeug.socket"):
            environ = environ_for(**{key: tls, "wsgi.multithread": False})
            assert wsgi.can_hand_over(environ)
            with pytest.raises(syncws.UnsupportedServer, match="test-server"):
                wsgi.upgrade(environ, apps.echo)


@pytest.mark.usefixtures("fresh_held")
def test_tls_terminated_by_werkzeug_keeps_the_request_thread_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    authority = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    server = make_server("127.0.0.1", 0, apps.flask_app, threaded=True, ssl_context=server_context)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    caplog.set_level(logging.WARNING, logger="syncws")
    try:
        uri = f"wss://127.0.0.1:{server.server_port}/context?user=tls"
        with syncws.connect(uri, ssl=client_context) as client:
            # The request's own thread (Werkzeug names none): not syncws's.
            message = client.recv(timeout=WAIT)
            assert isinstance(message, str) and message.startswith("/context tls ")
            assert not message.endswith("syncws-wsgi-handler")
        assert wsgi.shutdown_all(timeout=WAIT)
    finally:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "over TLS terminated by the server" in warning.getMessage()


@pytest.mark.usefixtures("fresh_held")
def test_held_websockets_warn_once_when_one_thread_is_left() -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collect = Collect()
    logging.getLogger("syncws").addHandler(collect)
    try:
        _held.threads_per_worker[:] = [4]
        environ = {"SERVER_SOFTWARE": "gunicorn/23"}
        for _ in range(4):
            _held.warn_if_held(environ)
    finally:
        logging.getLogger("syncws").removeHandler(collect)
    (record,) = records
    assert record.getMessage().startswith("3 WebSocket(s) hold 3 of its 4 threads of gunicorn/23")


@pytest.mark.usefixtures("fresh_held")
def test_without_duplicable_sockets_werkzeug_keeps_the_request_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows' sockets are handles os.dup() can't take: the old in-thread path serves them."""
    monkeypatch.setattr(_handoff, "CAN_DUPLICATE", False)
    with werkzeug(apps.flask_app) as port:
        with syncws.connect(f"ws://127.0.0.1:{port}/context?user=win") as client:
            message = client.recv(timeout=WAIT)
        assert isinstance(message, str) and message.startswith("/context win ")
        assert not message.endswith("syncws-wsgi-handler")
        check_only_frames_after_101(port, "/echo")
    # wsgiref shows its socket only through wsgi.input: refused there.
    left, right = socket.socketpair()
    with left, right, left.makefile("rb") as reader:
        assert not wsgi.can_hand_over(environ_for(**{"wsgi.input": reader}))
