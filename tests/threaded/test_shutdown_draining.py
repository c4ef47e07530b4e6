"""``Server.shutdown()`` and sockets still draining an HTTP answer (issue 31 item 11).

A request refused or answered by ``process_request`` leaves a socket that
the background thread drains until the client's EOF, so that unread input
can't reset the answer away. ``shutdown()`` waits for those sockets for up to
``HTTP_DRAIN_GRACE`` and closes the ones left: when it returns, the server
holds no socket.
"""

from __future__ import annotations

import socket

import pytest

from syncws import Request, Response, ServerConnection
from syncws.threaded import server as server_module

from .helpers import WAIT, echo, running_server


@pytest.mark.parametrize("client_closes", [False, True])
def test_shutdown_closes_sockets_draining_an_answer(
    client_closes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "HTTP_DRAIN_GRACE", 0.2, raising=False)
    answered: list[ServerConnection] = []

    def refuse(connection: ServerConnection, request: Request) -> Response:
        answered.append(connection)
        return connection.respond(403, "not here\n")

    with running_server(echo, process_request=refuse) as server:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        with client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"not here\n"):
                chunk = client.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 403")
            if client_closes:
                client.shutdown(socket.SHUT_WR)
            # The client read the whole answer; it may keep its socket open.
            server.shutdown()
            (connection,) = answered
            assert connection.wait_closed(0), "shutdown() returned with the socket open"
