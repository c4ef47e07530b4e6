"""syncws.testing: run_server, ScriptedPeer, and the pytest plugin's fixtures."""

from __future__ import annotations

import threading

import pytest

import syncws
from syncws.protocol.framing import encode_frame
from syncws.testing import RunningServer, ScriptedPeer, run_server

from .threaded.helpers import WAIT

pytestmark = pytest.mark.timeout(30)


def test_run_server_yields_a_uri_and_stops() -> None:
    with run_server() as running:
        assert running.uri == f"ws://127.0.0.1:{running.port}/"
        assert str(running) == running.uri
        with syncws.connect(running.uri) as client:
            client.send("echo?")
            assert client.recv(timeout=WAIT) == "echo?"
            connections = running.server.connections
        assert len(connections) == 1
    with pytest.raises(OSError):
        syncws.connect(running.uri, open_timeout=2)


def test_run_server_on_ipv6_and_with_options() -> None:
    try:
        manager = run_server(host="::1", subprotocols=["chat"])
        running = manager.__enter__()
    except OSError:  # pragma: no cover - a machine without IPv6 loopback
        pytest.skip("no IPv6 loopback here")
    try:
        assert running.uri.startswith("ws://[::1]:")
        with syncws.connect(running.uri, subprotocols=["chat"]) as client:
            assert client.subprotocol == "chat"
    finally:
        manager.__exit__(None, None, None)


def test_server_closes_clients_with_1001_on_exit() -> None:
    with run_server() as running:
        client = syncws.connect(running.uri)
    with pytest.raises(syncws.ConnectionClosed) as caught:
        client.recv(timeout=WAIT)
    assert caught.value.code == 1001


def _client(uri: str, script: list[str]) -> threading.Thread:
    def run() -> None:
        with syncws.connect(uri) as client:
            for step in script:
                if step == "recv":
                    client.send(client.recv(timeout=WAIT))  # echo what the peer said
                else:
                    client.send(step)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_scripted_peer_expects_sends_and_sees_the_close() -> None:
    with ScriptedPeer() as peer:
        client = _client(peer.uri, ["hello", "recv"])
        peer.expect("hello")
        assert peer.ping() >= 0  # the client is waiting for a message: it answers
        peer.send(b"binary back")
        peer.expect(b"binary back")
        peer.expect_close(code=1000)
        client.join(WAIT)


def test_scripted_peer_reports_surprises() -> None:
    with ScriptedPeer(timeout=0.2) as peer:
        with pytest.raises(AssertionError, match="no client connected"):
            peer.accept()
        client = _client(peer.uri, ["one", "two"])
        peer.accept()
        with pytest.raises(AssertionError, match="expected 'uno', got 'one'"):
            peer.expect("uno")
        with pytest.raises(AssertionError, match="expected the connection to close, got"):
            peer.expect_close()
        with pytest.raises(AssertionError, match="expected close code 4000"):
            peer.expect_close(code=4000)
        with pytest.raises(AssertionError, match="connection closed"):
            peer.expect("more")
        client.join(WAIT)


def test_scripted_peer_waits_are_bounded() -> None:
    with ScriptedPeer(timeout=0.1) as peer, syncws.connect(peer.uri) as client:
        peer.accept()
        with pytest.raises(AssertionError, match="sent no message"):
            peer.recv()
        with pytest.raises(AssertionError, match="didn't close"):
            peer.expect_close()
        peer.close(4000, "scripted")
        with pytest.raises(syncws.ConnectionClosed) as caught:
            client.recv(timeout=WAIT)
        assert (caught.value.code, caught.value.reason) == (4000, "scripted")


def test_scripted_peer_sends_raw_frames() -> None:
    with ScriptedPeer() as peer, syncws.connect(peer.uri) as client:
        # A text frame with invalid UTF-8: the client must fail with 1007.
        peer.send_raw(b"".join(encode_frame(0x1, b"\xff\xfe")))
        with pytest.raises(syncws.ConnectionClosedError) as caught:
            client.recv(timeout=WAIT)
        assert caught.value.sent_code == 1007


# -- the pytest plugin ----------------------------------------------------------------------


def test_fixtures_give_a_server_and_a_client(
    syncws_server: RunningServer, syncws_client: syncws.ClientConnection
) -> None:
    syncws_client.send("via fixtures")
    assert syncws_client.recv(timeout=WAIT) == "via fixtures"
    assert syncws_server.uri.startswith("ws://127.0.0.1:")


class TestOverriddenHandler:
    @pytest.fixture
    def syncws_handler(self) -> object:
        def shout(connection: syncws.ServerConnection) -> None:
            for message in connection:
                connection.send(str(message).upper())

        return shout

    @pytest.fixture
    def syncws_server_options(self) -> dict[str, object]:
        return {"compression": None}

    def test_handler_and_options(self, syncws_client: syncws.ClientConnection) -> None:
        syncws_client.send("quiet")
        assert syncws_client.recv(timeout=WAIT) == "QUIET"
        assert syncws_client.protocol.extensions == []


def test_plugin_loads_through_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_echo(syncws_client):
            syncws_client.send("hi")
            assert syncws_client.recv(timeout=10) == "hi"

        def test_peer(syncws_peer):
            assert syncws_peer.uri.startswith("ws://")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
