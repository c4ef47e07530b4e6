"""The opening handshake, in memory: ClientProtocol against ServerProtocol."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from syncws.exceptions import (
    InvalidHeader,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidOrigin,
    InvalidStatus,
    InvalidUpgrade,
    InvalidVersion,
    NegotiationError,
)
from syncws.protocol.client import ClientProtocol
from syncws.protocol.connection import Protocol, State
from syncws.protocol.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from syncws.protocol.events import Binary, Text
from syncws.protocol.handshake import accept_key, generate_key
from syncws.protocol.headers import Headers
from syncws.protocol.http11 import Limits, Request, Response
from syncws.protocol.server import ServerProtocol

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def wire(protocol: Protocol) -> bytes:
    return b"".join(protocol.data_to_send())


def request_bytes(**headers: str) -> bytes:
    fields = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value != "-")
    return f"GET /chat HTTP/1.1\r\n{lines}\r\n".encode()


def handshake(
    client: ClientProtocol, server: ServerProtocol, *, split: bool = False
) -> tuple[Request, Response]:
    client.send_request(client.connect())
    data = wire(client)
    chunks = [data[i : i + 1] for i in range(len(data))] if split else [data]
    for chunk in chunks:
        server.receive_data(chunk)
    (request,) = server.events_received()
    server.send_response(server.accept(request))
    data = wire(server)
    chunks = [data[i : i + 1] for i in range(len(data))] if split else [data]
    for chunk in chunks:
        client.receive_data(chunk)
    (response,) = client.events_received()
    return request, response


def test_accept_key_rfc_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert generate_key() != generate_key()


@pytest.mark.parametrize("split", [False, True])
def test_successful_handshake_with_compression(split: bool) -> None:
    client = ClientProtocol("example.com:8000", "/chat?x=1", origin="https://example.com")
    server = ServerProtocol()
    request, response = handshake(client, server, split=split)
    assert request.path == "/chat?x=1"
    assert request.headers["Host"] == "example.com:8000"
    assert request.headers["Origin"] == "https://example.com"
    assert request.headers["User-Agent"].startswith("syncws/")
    assert response.status == 101
    assert response.headers["Server"].startswith("syncws/")
    assert client.state is server.state is State.OPEN
    assert isinstance(client.extensions[0], PerMessageDeflate)
    assert isinstance(server.extensions[0], PerMessageDeflate)
    assert client.request is not None and server.response is not None
    client.send_text("x" * 1000)
    server.receive_data(wire(client))
    assert server.events_received() == [Text("x" * 1000)]


def test_handshake_without_compression_and_with_extra_headers() -> None:
    client = ClientProtocol(
        "h",
        extensions=(),
        additional_headers={"Authorization": "Bearer t", "User-Agent": "mine"},
        user_agent=None,
    )
    server = ServerProtocol(server_header=None)
    request, response = handshake(client, server)
    assert "Sec-WebSocket-Extensions" not in request.headers
    assert request.headers["User-Agent"] == "mine"
    assert "Server" not in response.headers
    assert client.extensions == server.extensions == []


def test_server_with_compression_off_answers_without_it() -> None:
    client, server = ClientProtocol("h"), ServerProtocol(extensions=())
    _, response = handshake(client, server)
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert client.extensions == []


def test_frames_right_behind_the_request_are_kept() -> None:
    client, server = ClientProtocol("h", extensions=()), ServerProtocol()
    client.send_request(client.connect())
    # Pretend the handshake is done on the client to produce a frame early.
    client.state = State.OPEN
    client.send_text("early")
    server.receive_data(wire(client))
    (request,) = server.events_received()
    server.send_response(server.accept(request))
    assert server.events_received() == [Text("early")]


def accepted() -> tuple[ClientProtocol, ServerProtocol]:
    """A client whose request the server accepted; the response not delivered yet."""
    client, server = ClientProtocol("h", extensions=()), ServerProtocol(extensions=())
    client.send_request(client.connect())
    server.receive_data(wire(client))
    (request,) = server.events_received()
    server.send_response(server.accept(request))
    return client, server


def test_frames_right_behind_the_response_are_kept() -> None:
    client, server = accepted()
    server.send_text("welcome")
    client.receive_data(wire(server))
    events = client.events_received()
    assert isinstance(events[0], Response)
    assert events[1:] == [Text("welcome")]


def test_extra_bytes_while_the_server_decides_are_buffered() -> None:
    server = ServerProtocol()
    server.receive_data(request_bytes())
    (request,) = server.events_received()
    server.receive_data(b"\x81\x82")  # half a frame
    assert server.events_received() == []
    server.send_response(server.accept(request, additional_headers={"Set-Cookie": "a=1"}))
    assert b"Set-Cookie: a=1" in wire(server)


# -- subprotocols -------------------------------------------------------------------


def test_subprotocol_negotiation() -> None:
    client = ClientProtocol("h", subprotocols=["v2.chat", "v1.chat"])
    server = ServerProtocol(subprotocols=["v1.chat", "v2.chat"])
    _, response = handshake(client, server)
    assert response.headers["Sec-WebSocket-Protocol"] == "v2.chat"  # the client's preference
    assert client.subprotocol == server.subprotocol == "v2.chat"


def test_subprotocol_selection_hook() -> None:
    def select(offered: Sequence[str], available: Sequence[str]) -> str | None:
        return offered[-1]

    client = ClientProtocol("h", subprotocols=["a", "b"])
    server = ServerProtocol(subprotocols=["a"], select_subprotocol=select)
    handshake(client, server)
    assert client.subprotocol == "b"


def test_no_common_subprotocol_still_connects() -> None:
    client = ClientProtocol("h", subprotocols=["a"])
    server = ServerProtocol(subprotocols=["b"])
    _, response = handshake(client, server)
    assert "Sec-WebSocket-Protocol" not in response.headers
    assert client.state is State.OPEN
    assert client.subprotocol is None
    # A server with no list ignores the client's.
    client, server = ClientProtocol("h", subprotocols=["a"]), ServerProtocol()
    handshake(client, server)
    assert client.subprotocol is None


# -- server-side rejections -----------------------------------------------------------


def server_outcome(data: bytes, **kwargs: object) -> tuple[ServerProtocol, bytes]:
    server = ServerProtocol(**kwargs)  # type: ignore[arg-type]
    server.receive_data(data)
    events = server.events_received()
    if events:
        server.send_response(server.accept(events[0]))
    return server, wire(server)


@pytest.mark.parametrize(
    ("headers", "exc_type", "status"),
    [
        ({"Upgrade": "-"}, InvalidUpgrade, 426),
        ({"Upgrade": "h2c"}, InvalidUpgrade, 426),
        ({"Connection": "keep-alive"}, InvalidUpgrade, 426),
        ({"Connection": "-"}, InvalidUpgrade, 426),
        ({"Sec_WebSocket_Version": "8"}, InvalidVersion, 426),
        ({"Sec_WebSocket_Version": "-"}, InvalidHeader, 400),
        ({"Sec_WebSocket_Key": "-"}, InvalidHeader, 400),
        ({"Sec_WebSocket_Key": "c2hvcnQ="}, InvalidHeaderValue, 400),
        ({"Sec_WebSocket_Key": "not base64!!"}, InvalidHeaderValue, 400),
        ({"Host": "-"}, InvalidHeader, 400),
        ({"Host": ""}, InvalidHeader, 400),
    ],
)
def test_invalid_requests_get_an_error_response(
    headers: dict[str, str], exc_type: type[Exception], status: int
) -> None:
    server, data = server_outcome(request_bytes(**headers))
    assert type(server.handshake_exc) is exc_type
    assert data.startswith(f"HTTP/1.1 {status} ".encode())
    assert server.state is State.CLOSED
    assert server.should_close_transport
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in data
        assert b"Upgrade: websocket\r\n" in data


def test_duplicate_key_is_rejected() -> None:
    data = request_bytes().replace(b"\r\n\r\n", f"\r\nSec-WebSocket-Key: {KEY}\r\n\r\n".encode())
    server, response = server_outcome(data)
    assert "more than one" in str(server.handshake_exc)
    assert response.startswith(b"HTTP/1.1 400 ")


def test_malformed_request_is_answered_by_the_core() -> None:
    server, data = server_outcome(b"POST / HTTP/1.1\r\n\r\n")
    assert isinstance(server.handshake_exc, InvalidMessage)
    assert data.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET" in data
    # Nothing more is read.
    server.receive_data(request_bytes())
    assert server.events_received() == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", b"505"),
        (b"GET /" + b"a" * 9000, b"414"),
        (b"GET / HTTP/1.1\r\nbad\r\n\r\n", b"400"),
    ],
)
def test_other_malformed_requests(data: bytes, status: bytes) -> None:
    _, response = server_outcome(data)
    assert response.startswith(b"HTTP/1.1 " + status)
    assert b"a" * 20 not in response  # nothing of the request is reflected


def test_extension_header_grammar_error_is_a_400() -> None:
    _, data = server_outcome(request_bytes(Sec_WebSocket_Extensions="permessage-deflate;"))
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"invalid Sec-WebSocket-Extensions header" in data


@pytest.mark.parametrize(
    ("origins", "origin_header", "allowed"),
    [
        (["https://a.example"], "https://a.example", True),
        (["https://a.example"], "https://evil.example", False),
        (["https://a.example"], "-", False),
        (["https://a.example", None], "-", True),
        (
            lambda origin: origin is not None and origin.endswith(".example"),
            "https://b.example",
            True,
        ),
        (lambda origin: False, "https://b.example", False),
    ],
)
def test_origin_policy(origins: object, origin_header: str, allowed: bool) -> None:
    server, data = server_outcome(request_bytes(Origin=origin_header), origins=origins)
    if allowed:
        assert data.startswith(b"HTTP/1.1 101 ")
    else:
        assert isinstance(server.handshake_exc, InvalidOrigin)
        assert data.startswith(b"HTTP/1.1 403 ")
        assert b"evil" not in data


def test_duplicate_origin_is_refused() -> None:
    data = request_bytes(Origin="https://a").replace(b"\r\n\r\n", b"\r\nOrigin: https://b\r\n\r\n")
    server, _response = server_outcome(data, origins=["https://a"])
    assert isinstance(server.handshake_exc, InvalidOrigin)


def test_reject_serves_plain_http() -> None:
    server = ServerProtocol()
    server.receive_data(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
    (_request,) = server.events_received()
    server.send_response(server.reject(200, "OK", headers={"Cache-Control": "no-store"}))
    data = wire(server)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Server: syncws/" in data
    assert isinstance(server.handshake_exc, InvalidStatus)
    assert server.should_close_transport
    assert ServerProtocol(server_header=None).reject(503, "busy").headers.get("Server") is None


def test_eof_during_request() -> None:
    server = ServerProtocol()
    server.receive_data(b"GET / HT")
    server.receive_eof()
    assert isinstance(server.handshake_exc, InvalidMessage)
    assert server.state is State.CLOSED


def test_extension_offers_fall_back_in_order() -> None:
    offers = "permessage-deflate; server_max_window_bits=7, permessage-deflate, foo"
    server, data = server_outcome(request_bytes(Sec_WebSocket_Extensions=offers))
    assert b"Sec-WebSocket-Extensions: permessage-deflate\r\n" in data
    assert len(server.extensions) == 1
    # Only one deflate is accepted even if two offers are valid.
    offers = "permessage-deflate, permessage-deflate; client_no_context_takeover"
    server, data = server_outcome(request_bytes(Sec_WebSocket_Extensions=offers))
    assert data.count(b"permessage-deflate") == 1


# -- client-side rejections ------------------------------------------------------------


def client_outcome(response: bytes, **kwargs: object) -> ClientProtocol:
    client = ClientProtocol("h", **kwargs)  # type: ignore[arg-type]
    client.send_request(client.connect())
    wire(client)
    client.receive_data(response)
    return client


def response_101(client_key: str, extra: str = "") -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(client_key)}\r\n{extra}\r\n"
    ).encode()


def test_client_gets_a_non_101() -> None:
    client = client_outcome(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
    exc = client.handshake_exc
    assert isinstance(exc, InvalidStatus)
    assert exc.status_code == 403
    assert exc.response.body == b"nope"
    assert str(exc) == "server rejected WebSocket connection: HTTP 403 Forbidden"
    assert client.state is State.CLOSED
    assert isinstance(client.events_received()[0], Response)


def test_client_body_until_eof() -> None:
    client = client_outcome(b"HTTP/1.1 500 Oops\r\n\r\nstack trace")
    assert client.handshake_exc is None
    client.receive_eof()
    assert isinstance(client.handshake_exc, InvalidStatus)
    assert client.handshake_exc.response.body == b"stack trace"


def test_client_eof_before_any_response() -> None:
    client = client_outcome(b"")
    client.receive_eof()
    assert isinstance(client.handshake_exc, InvalidMessage)
    assert "end of the response head" in str(client.handshake_exc)


def test_client_malformed_response() -> None:
    client = client_outcome(b"HTTP/1.1 abc\r\n\r\n")
    assert isinstance(client.handshake_exc, InvalidMessage)


def test_response_before_request() -> None:
    client = ClientProtocol("h")
    client.receive_data(b"HTTP/1.1 101 OK\r\n\r\n")
    assert isinstance(client.handshake_exc, InvalidMessage)


def with_key(extra: str = "", **kwargs: object) -> ClientProtocol:
    client = ClientProtocol("h", **kwargs)  # type: ignore[arg-type]
    request = client.connect()
    client.send_request(request)
    wire(client)
    client.receive_data(response_101(request.headers["Sec-WebSocket-Key"], extra))
    return client


def test_client_checks_the_accept_key() -> None:
    client = client_outcome(response_101("another key"))
    assert isinstance(client.handshake_exc, InvalidHeaderValue)
    assert "does not match" in str(client.handshake_exc)


def test_client_checks_upgrade() -> None:
    client = client_outcome(b"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n\r\n")
    assert isinstance(client.handshake_exc, InvalidUpgrade)


@pytest.mark.parametrize(
    ("extra", "kwargs", "message"),
    [
        ("Sec-WebSocket-Extensions: x-unknown\r\n", {}, "did not offer"),
        ("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n", {}, "unknown"),
        ("Sec-WebSocket-Protocol: chat\r\n", {}, "did not offer"),
        ("Sec-WebSocket-Protocol: a, b\r\n", {"subprotocols": ["a", "b"]}, "several"),
    ],
)
def test_client_negotiation_errors(extra: str, kwargs: dict[str, object], message: str) -> None:
    client = with_key(extra, **kwargs)
    assert isinstance(client.handshake_exc, NegotiationError)
    assert message in str(client.handshake_exc)


def test_client_accepts_a_valid_extension_response() -> None:
    client = with_key(
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
        extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=False)],
    )
    assert client.state is State.OPEN
    assert isinstance(client.extensions[0], PerMessageDeflate)
    assert client.extensions[0].remote_no_context_takeover


def test_limits_are_passed_through() -> None:
    server = ServerProtocol(limits=Limits(max_line=20))
    server.receive_data(b"GET /" + b"a" * 30)
    assert server.handshake_exc is not None
    client = ClientProtocol("h", limits=Limits(max_line=20))
    client.send_request(client.connect())
    client.receive_data(b"HTTP/1.1 101 " + b"a" * 30)
    assert client.handshake_exc is not None


def test_server_extension_policy_is_used() -> None:
    client = ClientProtocol("h")
    server = ServerProtocol(
        extensions=[ServerPerMessageDeflateFactory(server_no_context_takeover=True)]
    )
    _, response = handshake(client, server)
    assert response.headers["Sec-WebSocket-Extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
    )
    assert isinstance(client.extensions[0], PerMessageDeflate)
    assert client.extensions[0].remote_no_context_takeover


def test_headers_object_is_accepted_as_additional_headers() -> None:
    client = ClientProtocol("h", additional_headers=Headers([("X-A", "1"), ("X-A", "2")]))
    assert client.connect().headers.get_all("X-A") == ["1", "2"]


def test_a_big_frame_starting_right_behind_the_response_is_gathered_once() -> None:
    # _open() parses what came behind the response; receive_data() must not
    # parse it a second time (it would start gathering the frame twice).
    client, server = accepted()
    payload = bytes(range(256)) * 1024  # 256 KiB: gathered apart from the buffer
    server.send_binary(payload)
    data = wire(server)
    cut = len(data) - len(payload) // 2
    client.receive_data(data[:cut])
    client.receive_data(data[cut:])
    events = client.events_received()
    assert isinstance(events[0], Response)
    assert events[1:] == [Binary(payload)]
