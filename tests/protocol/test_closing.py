"""The core's closing handshake: who closes, what is echoed, what comes after a close."""

from __future__ import annotations

import pytest

from syncws.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    ProtocolError,
)
from syncws.protocol.connection import State
from syncws.protocol.events import Close, Ping, Text

from .helpers import client, client_frame, sent, server, server_frame

# -- closing -----------------------------------------------------------------------


def test_server_initiated_close() -> None:
    srv, cli = server(), client()
    srv.send_close(1000, "bye")
    assert srv.state is State.CLOSING
    assert not srv.should_close_transport
    cli.receive_data(sent(srv))
    assert cli.events_received() == [Close(1000, "bye")]
    assert cli.state is State.CLOSING
    # The client echoes the code and reason and waits for the server to close TCP.
    assert not cli.should_close_transport
    srv.receive_data(sent(cli))
    assert srv.events_received() == [Close(1000, "bye")]
    assert srv.should_close_transport
    srv.receive_eof()
    cli.receive_eof()
    assert srv.state is cli.state is State.CLOSED
    assert srv.close_code == 1000
    assert cli.close_code == 1000
    assert cli.close_reason == "bye"
    assert srv.close_sent_first is True
    assert cli.close_sent_first is False
    exc = srv.close_exc()
    assert isinstance(exc, ConnectionClosedOK)
    assert str(exc) == "sent 1000 (OK) bye; then received 1000 (OK) bye"
    assert str(cli.close_exc()) == "received 1000 (OK) bye; then sent 1000 (OK) bye"
    assert cli.close_exc().we_closed_first is False


def test_client_initiated_close_server_closes_tcp() -> None:
    srv, cli = server(), client()
    cli.send_close(1001)
    srv.receive_data(sent(cli))
    assert srv.events_received() == [Close(1001)]
    assert srv.should_close_transport  # both close frames are exchanged
    cli.receive_data(sent(srv))
    assert not cli.should_close_transport
    cli.receive_eof()
    assert cli.should_close_transport
    assert isinstance(cli.close_exc(), ConnectionClosedOK)


def test_close_is_echoed_with_its_code_and_reason() -> None:
    # As Chromium and Node's ws do: the peer that closed finds its reason in the answer
    # (a page's close event shows the reason of the frame it received).
    srv = server()
    payload = b"\x0f\xa1" + "bye \u21c4".encode()  # 4001
    srv.receive_data(client_frame(0x8, payload))
    assert srv.events_received() == [Close(4001, "bye \u21c4")]
    assert sent(srv) == b"\x88\x09\x0f\xa1bye \xe2\x87\x84"
    assert srv.close_sent == Close(4001, "bye \u21c4")
    cli = client()
    cli.receive_data(server_frame(0x8, b"\x03\xe8" + b"x" * 123))  # the longest reason
    frame = sent(cli)
    assert frame[:2] == b"\x88\xfd"  # FIN + close, masked, 125 bytes
    mask = frame[2:6]
    unmasked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(frame[6:]))
    assert unmasked == b"\x03\xe8" + b"x" * 123
    assert cli.close_sent == Close(1000, "x" * 123)


def test_close_without_code_is_echoed_without_code() -> None:
    srv = server()
    srv.receive_data(client_frame(0x8))
    assert srv.events_received() == [Close(1005)]
    assert sent(srv) == server_frame(0x8)
    assert srv.close_code == 1005
    assert isinstance(srv.close_exc(), ConnectionClosedOK)


def test_send_close_without_code() -> None:
    proto = server()
    proto.send_close(None)
    assert sent(proto) == server_frame(0x8)
    assert proto.close_sent == Close(1005, "")


def test_application_close_code_is_an_error_close() -> None:
    srv = server()
    srv.receive_data(client_frame(0x8, b"\x0f\xa0done"))  # 4000
    assert srv.close_code == 4000
    assert srv.close_reason == "done"
    exc = srv.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert (exc.code, exc.reason) == (4000, "done")


def test_nothing_is_sent_or_read_after_close() -> None:
    proto = server()
    proto.send_close()
    for action in (
        lambda: proto.send_text("x"),
        proto.send_ping,
        proto.send_close,
    ):
        with pytest.raises(InvalidState, match="closing or closed"):
            action()
    # Data still arrives until the peer's close frame; pings are not answered.
    proto.receive_data(client_frame(0x1, b"late") + client_frame(0x9, b"p"))
    assert proto.events_received() == [Text("late"), Ping(b"p")]
    assert sent(proto) == server_frame(0x8, b"\x03\xe8")
    proto.receive_data(client_frame(0x8, b"\x03\xe8") + client_frame(0x1, b"ignored"))
    assert proto.events_received() == [Close(1000)]


def test_send_close_validates_arguments() -> None:
    proto = server()
    with pytest.raises(ValueError, match="may not be sent"):
        proto.send_close(1006)
    assert proto.state is State.OPEN


def test_close_abandons_a_fragmented_message_being_sent() -> None:
    proto = server()
    proto.send_text("a", fin=False)
    proto.send_close()
    assert proto.state is State.CLOSING


def test_eof_without_close_frame_is_abnormal() -> None:
    proto = client()
    assert proto.close_code is None
    assert proto.receiving
    proto.receive_data(server_frame(0x1, b"a", fin=False))
    assert proto.events_received() == [Text("a", final=False)]
    proto.receive_eof()
    proto.receive_eof()  # idempotent
    assert proto.state is State.CLOSED
    assert not proto.receiving
    assert proto.close_code == 1006
    exc = proto.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 1006
    assert str(exc) == "no close frame received or sent: the TCP connection dropped"
    proto.receive_data(server_frame(0x1, b"x"))
    assert proto.events_received() == []


def test_eof_after_we_sent_close() -> None:
    proto = server()
    proto.send_close(1000)
    proto.receive_eof()
    exc = proto.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert str(exc) == "sent 1000 (OK); no close frame received"


def test_fail_by_application() -> None:
    proto = server()
    proto.fail(1011, "handler crashed")
    assert proto.should_close_transport
    assert sent(proto) == server_frame(0x8, b"\x03\xf3handler crashed")
    exc = proto.close_exc()
    assert str(exc) == "sent 1011 (unexpected error) handler crashed; no close frame received"
    proto.fail()  # nothing more to send
    assert sent(proto) == b""


def test_fail_after_close_received_sends_nothing_more() -> None:
    proto = server()
    proto.receive_data(client_frame(0x8, b"\x03\xe8"))
    sent(proto)
    proto.fail(1011)
    assert sent(proto) == b""
    assert str(proto.close_exc()) == "received 1000 (OK); then sent 1000 (OK)"


def test_protocol_error_is_the_cause_of_the_close_exception() -> None:
    proto = server()
    proto.receive_data(client_frame(0x3))
    proto.receive_eof()
    exc = proto.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert isinstance(exc.__cause__, ProtocolError)


def test_received_close_without_sending_one() -> None:
    # A close_exc built after the peer's close but before ours is recorded.
    proto = server()
    proto.close_received = Close(1000, "")
    assert str(proto.close_exc()) == "received 1000 (OK); no close frame sent"
