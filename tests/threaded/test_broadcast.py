"""broadcast(): many connections, slow peers, concurrent senders, shared encoding."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from syncws import (
    BacklogFull,
    CloseCode,
    Connection,
    ConnectionClosed,
    InvalidState,
    ServerConnection,
    State,
    broadcast,
    connect,
)
from syncws.protocol import Protocol, ServerProtocol, Side
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.events import Close, Text
from syncws.protocol.extensions import Extension
from syncws.threaded.connection.driver import frame_to_protocol

from .helpers import WAIT, connection_pair, running_server, wait_until

pytestmark = pytest.mark.timeout(60)


def server_side(**kwargs: object) -> tuple[Connection, socket.socket]:
    """A server-side connection whose peer is a raw socket that reads only when told."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    extensions: list[Extension] = list(kwargs.pop("extensions", []))  # type: ignore[call-overload]
    connection = Connection(ours, Protocol(Side.SERVER, extensions=extensions), **kwargs)  # type: ignore[arg-type]
    connection.start_background()
    return connection, theirs


def drain(peer: socket.socket, count: int | None = None) -> list[object]:
    """Read what a stalled peer was sent and parse it as a client would."""
    client = Protocol(Side.CLIENT, max_size=None)
    events: list[object] = []
    peer.settimeout(WAIT)
    while count is None or len(events) < count:
        data = peer.recv(1 << 20)
        if not data:
            break
        client.receive_data(data)
        events += client.events_received()
        if any(isinstance(event, Close) for event in events):
            break
    return events


@pytest.fixture
def pairs() -> Iterator[list[tuple[Connection, Connection]]]:
    made: list[tuple[Connection, Connection]] = []
    yield made
    for client, server in made:
        client._abort()
        server._abort()


def test_fan_out_to_hundreds_of_connections(pairs: list[tuple[Connection, Connection]]) -> None:
    pairs += [connection_pair() for _ in range(250)]
    servers = [server for _, server in pairs]
    for i in range(20):
        assert broadcast(servers, f"message {i}") == 250
    for client, _ in pairs:
        assert [client.recv(timeout=WAIT) for _ in range(20)] == [f"message {i}" for i in range(20)]


def test_a_peer_that_never_reads_does_not_hold_the_others() -> None:
    stalled, stalled_peer = server_side(write_limit=64 * 1024)
    good = [connection_pair(write_limit=1 << 30) for _ in range(3)]
    received: list[list[bytes]] = [[] for _ in good]
    count, size = 300, 16 * 1024

    def read(index: int, client: Connection) -> None:
        received[index] = [client.recv(timeout=WAIT) for _ in range(count)]  # type: ignore[misc]

    readers = [
        threading.Thread(target=read, args=(index, client))
        for index, (client, _) in enumerate(good)
    ]
    for reader in readers:
        reader.start()
    try:
        for i in range(count):
            broadcast(
                [stalled] + [server for _, server in good], i.to_bytes(4, "big") * (size // 4)
            )
        for reader in readers:
            reader.join(WAIT)
        for messages in received:
            assert [int.from_bytes(m[:4], "big") for m in messages] == list(range(count))
        # The stalled peer missed messages, and its backlog stayed bounded.
        assert stalled.skipped_messages > 0
        assert stalled.buffered_amount <= 64 * 1024 + size
        # What it did get is whole messages, in order, with gaps.
        stalled_peer.shutdown(socket.SHUT_WR)
        events = drain(stalled_peer, count - stalled.skipped_messages)
        numbers = [int.from_bytes(e.data[:4], "big") for e in events]  # type: ignore[attr-defined]
        assert numbers == sorted(set(numbers))
        assert len(numbers) == count - stalled.skipped_messages
        assert all(len(e.data) == size for e in events)  # type: ignore[attr-defined]
    finally:
        stalled._abort()
        stalled_peer.close()
        for client, server in good:
            client._abort()
            server._abort()


def test_overflow_closes_a_slow_peer_with_the_code_given() -> None:
    stalled, stalled_peer = server_side(write_limit=0)
    try:
        # More than the kernel's buffers hold: bytes keep waiting in our outbox.
        broadcast([stalled], b"y" * (8 << 20))
        with pytest.raises(ExceptionGroup) as caught:
            broadcast(
                [stalled], "one more", overflow=CloseCode.TRY_AGAIN_LATER, raise_exceptions=True
            )
        (error,) = caught.value.exceptions
        assert isinstance(error, BacklogFull)
        assert error.closed and error.connection is stalled
        assert "write_limit" in str(error)
        assert stalled.state is State.CLOSING
        events = drain(stalled_peer)
        assert isinstance(events[-1], Close)
        assert events[-1].code == CloseCode.TRY_AGAIN_LATER
        assert not any(isinstance(e, Text) and e.data == "one more" for e in events)
    finally:
        stalled._abort()
        stalled_peer.close()


def test_skips_are_reported_and_delivery_resumes(caplog: pytest.LogCaptureFixture) -> None:
    stalled, stalled_peer = server_side(write_limit=0)
    try:
        # More than the kernel's buffers hold: bytes keep waiting in our outbox.
        broadcast([stalled], b"y" * (8 << 20))
        with caplog.at_level("INFO", logger="syncws"):
            with pytest.raises(ExceptionGroup) as caught:
                broadcast([stalled], "skipped", raise_exceptions=True)
            assert broadcast([stalled], "skipped again") == 0
            assert stalled.skipped_messages == 2
            assert isinstance(caught.value.exceptions[0], BacklogFull)
            assert not caught.value.exceptions[0].closed  # type: ignore[attr-defined]
            # One warning per episode, not one per message.
            warnings = [r for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1
            assert "skipping" in warnings[0].getMessage()
            # The peer catches up: delivery resumes, and that is logged too.
            stalled_peer.settimeout(WAIT)
            remaining = 10 + (8 << 20)  # the big frame, header included
            while remaining:
                remaining -= len(stalled_peer.recv(min(remaining, 1 << 20)))
            # The reactor counts what it wrote right after writing it.
            wait_until(lambda: stalled.buffered_amount == 0)
            assert broadcast([stalled], "back") == 1
        assert any("delivering again" in r.getMessage() for r in caplog.records)
    finally:
        stalled._abort()
        stalled_peer.close()


def test_concurrent_broadcast_and_send_never_interleave(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    pairs.append(connection_pair(write_limit=1 << 30))
    client, server = pairs[0]
    rounds = 200
    start = threading.Barrier(2)

    def sender() -> None:
        start.wait()
        for i in range(rounds):
            if i % 2:
                server.send(["frag", "ment", "ed"])  # three frames, one message
            else:
                server.send(b"direct")

    thread = threading.Thread(target=sender)
    thread.start()
    start.wait()
    for i in range(rounds):
        broadcast([server], f"broadcast {i}")
    # Read while the sender still sends: send() blocks on a peer that doesn't.
    messages = [client.recv(timeout=WAIT) for _ in range(2 * rounds)]
    thread.join(WAIT)
    assert sorted(set(messages), key=str) == sorted(
        {"fragmented", b"direct", *(f"broadcast {i}" for i in range(rounds))}, key=str
    )
    assert messages.count("fragmented") == rounds // 2
    assert messages.count(b"direct") == rounds // 2
    assert [m for m in messages if isinstance(m, str) and m.startswith("b")] == [
        f"broadcast {i}" for i in range(rounds)
    ]


def test_broadcast_during_a_fragmented_send_waits_for_its_end(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    pairs.append(connection_pair())
    client, server = pairs[0]
    middle = threading.Event()
    resume = threading.Event()

    def fragments() -> Iterator[str]:
        yield "first "
        middle.set()
        resume.wait(WAIT)
        yield "last"

    thread = threading.Thread(target=server.send, args=(fragments(),))
    thread.start()
    middle.wait(WAIT)
    assert broadcast([server], "later") == 1
    assert server.buffered_amount >= len("later")
    resume.set()
    thread.join(WAIT)
    assert client.recv(timeout=WAIT) == "first last"
    assert client.recv(timeout=WAIT) == "later"


def test_broadcasts_held_on_a_client_connection_are_encoded_there_in_order(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    # A client masks each frame itself (no sharing key): held broadcasts are
    # framed when the fragmented message ends, binary ones as binary.
    pairs.append(connection_pair())
    client, server = pairs[0]
    with client._lock:  # a fragmented message under way
        client.protocol.send_text("held ", fin=False)
        client._emit()
    assert broadcast([client], b"\x00binary") == 1
    assert broadcast([client], b"\x01again") == 1  # a second one held behind the first
    with client._lock:  # its last frame: the held broadcasts follow it
        frame_to_protocol(client, "behind", None, False, True)
        client._emit()
    client.send("end")  # writes what waits
    assert server.recv(timeout=WAIT) == "held behind"
    assert server.recv(timeout=WAIT) == b"\x00binary"
    assert server.recv(timeout=WAIT) == b"\x01again"
    assert server.recv(timeout=WAIT) == "end"


def test_a_failed_fragmented_send_drops_held_broadcasts(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    pairs.append(connection_pair())
    client, server = pairs[0]
    middle = threading.Event()
    in_the_middle = threading.Event()

    def fragments() -> Iterator[str]:
        yield "first "
        in_the_middle.set()  # the first fragment is sent: the message is open
        middle.wait(WAIT)
        raise RuntimeError("the producer failed")

    errors: list[BaseException] = []

    def send() -> None:
        try:
            server.send(fragments())
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert in_the_middle.wait(WAIT)
    assert server.protocol.sending_fragments
    broadcast([server], "held")
    middle.set()
    thread.join(WAIT)
    assert errors
    assert server.wait_closed(WAIT)
    assert server.buffered_amount == 0
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=WAIT)


def test_connections_closing_mid_fan_out_are_skipped(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    pairs += [connection_pair() for _ in range(40)]
    servers = [server for _, server in pairs]
    for _, server in pairs[::2]:
        server.close()
    # Closing from another thread while the fan-out runs.
    closer = threading.Thread(target=lambda: [s._abort() for s in servers[1::4]])
    closer.start()
    for i in range(50):
        broadcast(servers, f"m{i}", raise_exceptions=True)
    closer.join(WAIT)
    assert broadcast(servers, "last", raise_exceptions=True) == 10
    for client, server in pairs[3::4]:
        assert server.state is State.OPEN
        messages = []
        while (message := client.recv(timeout=WAIT)) != "last":
            messages.append(message)
        assert messages == [f"m{i}" for i in range(50)]


def test_messages_are_encoded_once_when_connections_allow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    prepare = Protocol.prepare_message

    def counting(self: Protocol, data: str | bytes, *, text: bool) -> list[bytes]:
        nonlocal calls
        calls += 1
        return prepare(self, data, text=text)

    monkeypatch.setattr(Protocol, "prepare_message", counting)
    plain = [server_side() for _ in range(5)]
    shared = [
        server_side(extensions=[PerMessageDeflate(local_no_context_takeover=True)])
        for _ in range(5)
    ]
    takeover = [server_side(extensions=[PerMessageDeflate()]) for _ in range(5)]
    everyone = plain + shared + takeover
    try:
        assert broadcast([c for c, _ in everyone], "hello " * 50) == 15
        # Once for the plain group, once for the deflate group, context takeover or not.
        assert calls == 2
        for connection, peer in everyone:
            extensions = [PerMessageDeflate()] if connection.protocol.extensions else []
            client = Protocol(Side.CLIENT, extensions=extensions)
            peer.settimeout(WAIT)
            while not (events := client.events_received()):
                client.receive_data(peer.recv(65536))
            assert events == [Text("hello " * 50)]
    finally:
        for connection, peer in everyone:
            connection._abort()
            peer.close()


def test_broadcasts_to_a_context_takeover_connection_keep_its_stream_whole() -> None:
    """As browsers negotiate deflate: shared broadcasts between ordinary sends.

    Each broadcast is compressed once, on its own; the connection's window
    slides by it as the peer's does, so an ordinary message after it may
    refer back across it. Both roads: queued at once, and held behind a
    fragmented message.
    """
    connection, peer = server_side(extensions=[PerMessageDeflate()])
    other, other_peer = server_side(extensions=[PerMessageDeflate()])
    ordinary = "words that come back after each broadcast, " * 6
    expected: list[str] = []
    try:
        connection.send(ordinary)
        assert broadcast([connection, other], "a broadcast unlike the rest " * 8) == 2
        connection.send(ordinary)  # refers back across the broadcast
        expected += [ordinary, "a broadcast unlike the rest " * 8, ordinary]
        # Held behind a fragmented message, then queued after its last frame.
        with connection._lock:
            connection.protocol.send_text("held ", fin=False)
            connection._emit()
        assert broadcast([connection], "another broadcast, held a moment " * 8) == 1
        with connection._lock:
            frame_to_protocol(connection, "behind", None, False, True)
            connection._emit()
        connection.send(ordinary)
        expected += ["held behind", "another broadcast, held a moment " * 8, ordinary]
        client = Protocol(Side.CLIENT, extensions=[PerMessageDeflate()])
        peer.settimeout(WAIT)
        messages: list[str] = []
        partial = ""
        while len(messages) < len(expected):
            client.receive_data(peer.recv(65536))
            for event in client.events_received():
                assert isinstance(event, Text)
                partial += event.data
                if event.final:
                    messages.append(partial)
                    partial = ""
        assert messages == expected
    finally:
        for own, theirs in ((connection, peer), (other, other_peer)):
            own._abort()
            theirs.close()


def test_client_connections_each_mask_their_own_copy(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    pairs += [connection_pair() for _ in range(3)]
    assert broadcast([client for client, _ in pairs], b"\x00binary") == 3
    for _, server in pairs:
        assert server.recv(timeout=WAIT) == b"\x00binary"


def test_text_flag_and_types(pairs: list[tuple[Connection, Connection]]) -> None:
    pairs.append(connection_pair())
    client, server = pairs[0]
    broadcast([server], b"as text", text=True)
    broadcast([server], "as binary", text=False)
    broadcast([server], bytearray(b"bytearray"))
    broadcast([server], memoryview(b"view"))
    assert [client.recv(timeout=WAIT) for _ in range(4)] == [
        "as text",
        b"as binary",
        b"bytearray",
        b"view",
    ]
    with pytest.raises(TypeError, match="str or bytes"):
        broadcast([server], 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overflow"):
        broadcast([server], "x", overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        broadcast([server], "x", overflow=1005)  # may not be sent on the wire


def test_a_connection_still_in_its_handshake_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    for ours, _ in pairs:
        ours.setblocking(False)
    connecting, other = (Connection(ours, ServerProtocol()) for ours, _ in pairs)
    try:
        with caplog.at_level("WARNING", logger="syncws"):
            assert broadcast([connecting], "x") == 0
        assert "handshake" in caplog.text
        with pytest.raises(ExceptionGroup) as caught:
            broadcast([connecting], "x", raise_exceptions=True)
        assert isinstance(caught.value.exceptions[0], InvalidState)
        assert caught.value.message == "broadcast skipped 1 connection"
        with pytest.raises(ExceptionGroup) as caught:
            broadcast([connecting, other], "x", raise_exceptions=True)
        assert caught.value.message == "broadcast skipped 2 connections"
    finally:
        for connection in (connecting, other):
            connection._abort()
        for _, theirs in pairs:
            theirs.close()


def test_broadcast_to_server_connections_from_any_thread() -> None:
    joined = threading.Semaphore(0)

    def handler(connection: ServerConnection) -> None:
        joined.release()
        for _ in connection:
            pass

    with running_server(handler) as server:
        clients = [connect(f"ws://127.0.0.1:{server.port}/") for _ in range(5)]
        try:
            for _ in clients:
                assert joined.acquire(timeout=WAIT)
            # From a thread that is no handler at all, like a timer or a Flask view.
            thread = threading.Thread(target=broadcast, args=(server.connections, "news"))
            thread.start()
            thread.join(WAIT)
            assert [c.recv(timeout=WAIT) for c in clients] == ["news"] * 5
        finally:
            for client in clients:
                client.close()


def test_close_callbacks_run_once_closed(pairs: list[tuple[Connection, Connection]]) -> None:
    pairs.append(connection_pair())
    client, server = pairs[0]
    closed = threading.Event()
    late = threading.Event()
    seen: list[Connection] = []
    server.add_close_callback(lambda connection: (seen.append(connection), closed.set()))
    client.close()
    assert closed.wait(WAIT)
    assert seen == [server]
    server.add_close_callback(lambda connection: late.set())
    assert late.wait(WAIT)
