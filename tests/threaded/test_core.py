"""The connection's core: invariants kept at every poll site (issue 29 item 4)."""

from __future__ import annotations

import socket
import threading

import pytest

from syncws.protocol import ServerProtocol
from syncws.threaded.connection.transport import TransportState
from syncws.threaded.deadline import Deadline
from syncws.threaded.server.connection import ServerConnection

from .helpers import WAIT, wait_until


@pytest.mark.timeout(30)
def test_the_handshakes_poll_is_counted_like_the_others() -> None:
    """A close from another thread while the handshake polls leaves the descriptor open.

    It is closed (RELEASED) once the polling thread is back, as for ``recv()``
    and the writer: the descriptor's number can't be reused under a poll.
    """
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = ServerConnection(ours, ServerProtocol(), None)
    outcome: list[object] = []

    def handshake() -> None:
        outcome.append(connection._receive_handshake(Deadline(WAIT)))

    thread = threading.Thread(target=handshake)
    thread.start()
    try:
        wait_until(lambda: connection._io_users == 1)  # the thread polls, lock released
        connection._abort()
        # The poll may already be over: either way, no descriptor closed under it.
        assert connection._transport in (TransportState.CLOSED, TransportState.RELEASED)
        thread.join(WAIT)
        assert outcome == [None]
        assert connection._io_users == 0
        assert connection._transport is TransportState.RELEASED
        assert ours.fileno() == -1
    finally:
        thread.join(WAIT)
        theirs.close()
