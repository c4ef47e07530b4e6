"""permessage-deflate on real loopback sockets: zlib state lives no longer than it must.

Issues 20 and 24: zlib state kept by idle connections cost ~90 KiB each, and
under churn its memory, freed in other threads than it was allocated in,
fragmented the C heap without bound. An idle connection now holds no zlib
object, and nothing of a connection outlives it.
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

import syncws
from syncws import ServerConnection
from syncws.protocol.deflate import PerMessageDeflate, ServerPerMessageDeflateFactory

from .helpers import WAIT, running_server, wait_until

pytestmark = pytest.mark.timeout(30)

#: Repetitive, so that context takeover matters: the second copy costs a few bytes.
MESSAGE = '{"type": "update", "user": "someone", "text": "' + "hello " * 50 + '"}'


def deflate_of(connection: syncws.Connection) -> PerMessageDeflate:
    (extension,) = connection.protocol.extensions
    assert isinstance(extension, PerMessageDeflate)
    return extension


def holds_zlib_state(extension: PerMessageDeflate) -> bool:
    return extension._compressor is not None or extension._decompressor is not None


@pytest.mark.parametrize("keep_state", [False, True])
def test_nothing_of_a_deflate_connection_outlives_it(keep_state: bool) -> None:
    server_side: list[weakref.ref[object]] = []
    handled = threading.Event()

    def handler(connection: ServerConnection) -> None:
        server_side.extend([weakref.ref(connection), weakref.ref(deflate_of(connection))])
        for message in connection:
            connection.send(message)
        handled.set()

    factory = ServerPerMessageDeflateFactory(keep_state=keep_state)
    with running_server(handler, extensions=[factory]) as server:
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            for _ in range(3):
                client.send(MESSAGE)
                assert client.recv(WAIT) == MESSAGE
            # Idle now, after echoes in both directions with context takeover.
            (server_connection,) = server.connections
            server_deflate = deflate_of(server_connection)
            assert server_deflate.remote_max_window_bits == 12  # bound by the response
            assert not holds_zlib_state(deflate_of(client))
            assert holds_zlib_state(server_deflate) is keep_state
            del server_connection, server_deflate
            client_side = [weakref.ref(client), weakref.ref(deflate_of(client))]
        assert handled.wait(WAIT)
        del client

        def all_gone() -> bool:
            gc.collect()
            return all(ref() is None for ref in server_side + client_side)

        wait_until(all_gone)
