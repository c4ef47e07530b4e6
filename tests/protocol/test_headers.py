"""The Headers multi-dict and the WebSocket header grammars."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncws.exceptions import InvalidHeaderFormat
from syncws.protocol.headers import (
    Headers,
    MultipleValuesError,
    build_extensions,
    build_subprotocols,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_upgrade,
)

# -- Headers -------------------------------------------------------------------------


def test_case_insensitive_and_multi_valued() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("X-One", "1")])
    headers.add("set-cookie", "b=2")
    assert headers["x-one"] == "1"
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    with pytest.raises(MultipleValuesError):
        headers["Set-Cookie"]
    with pytest.raises(MultipleValuesError):
        headers.get("Set-Cookie")
    with pytest.raises(KeyError):
        headers["missing"]
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    assert "X-ONE" in headers
    assert 42 not in headers
    assert list(headers) == ["Set-Cookie", "X-One"]
    assert len(headers) == 3


def test_setitem_replaces_and_delitem_removes_all() -> None:
    headers = Headers({"A": "1"})
    headers.add("a", "2")
    headers["A"] = "3"
    assert headers.get_all("a") == ["3"]
    del headers["a"]
    assert "a" not in headers


def test_setting_set_cookie_adds_a_cookie() -> None:
    # Cookies can't share a line (RFC 9110 5.3): a second one must not replace the first,
    # as in websockets, whose users write response.headers["Set-Cookie"] = ... twice.
    headers = Headers({"Set-Cookie": "a=1"})
    headers["set-cookie"] = "b=2"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers.serialize() == b"Set-Cookie: a=1\r\nset-cookie: b=2\r\n"
    del headers["Set-Cookie"]
    headers["Set-Cookie"] = "c=3"
    assert headers.serialize() == b"Set-Cookie: c=3\r\n"


def test_items_copy_equality_repr_serialize() -> None:
    headers = Headers({"Host": "example.com"})
    copy = headers.copy()
    copy.add("X", "y")
    assert list(headers.items()) == [("Host", "example.com")]
    assert headers == Headers([("host", "example.com")])
    assert headers != copy
    assert headers != {"Host": "example.com"}
    assert repr(headers) == "Headers([('Host', 'example.com')])"
    assert copy.serialize() == b"Host: example.com\r\nX: y\r\n"
    assert Headers(copy) == copy


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nInjected: yes"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\x00b"),
        ("Bad Name", "x"),
        ("Bad:Name", "x"),
        ("", "x"),
    ],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="invalid header"):
        Headers().add(name, value)
    with pytest.raises(ValueError, match="invalid header"):
        Headers()[name] = value


# -- grammars ------------------------------------------------------------------------


def test_connection_and_upgrade() -> None:
    assert parse_connection("keep-alive, Upgrade") == ["keep-alive", "Upgrade"]
    assert parse_connection(" ,, upgrade ,") == ["upgrade"]
    assert parse_upgrade("websocket") == ["websocket"]
    assert parse_upgrade("h2c/1.0, WebSocket") == ["h2c/1.0", "WebSocket"]
    assert parse_connection("") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("permessage-deflate", [("permessage-deflate", [])]),
        (
            "permessage-deflate; client_max_window_bits",
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            "permessage-deflate ; server_max_window_bits = 10 ; client_no_context_takeover",
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                )
            ],
        ),
        (
            'permessage-deflate; server_max_window_bits="10", permessage-deflate',
            [
                ("permessage-deflate", [("server_max_window_bits", "10")]),
                ("permessage-deflate", []),
            ],
        ),
        ('x; a="b\\c"', [("x", [("a", "bc")])]),
        ("foo, bar; baz=1", [("foo", []), ("bar", [("baz", "1")])]),
    ],
)
def test_parse_extensions(value: str, expected: list[object]) -> None:
    assert parse_extensions(value) == expected


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("permessage-deflate;", "expected a token at position 19"),
        ("permessage-deflate; a=", "expected a token"),
        ('x; a="unterminated', "expected a quoted string"),
        ('x; a="not a token"', "expected a token in quotes"),
        ("x y", "expected a comma at position 2"),
        ("=x", "expected a token at position 0"),
    ],
)
def test_parse_extensions_errors(value: str, detail: str) -> None:
    with pytest.raises(InvalidHeaderFormat, match=detail) as info:
        parse_extensions(value)
    assert info.value.name == "Sec-WebSocket-Extensions"


def test_subprotocols() -> None:
    assert parse_subprotocols("chat, superchat") == ["chat", "superchat"]
    assert build_subprotocols(["chat", "v2.json"]) == "chat, v2.json"
    with pytest.raises(ValueError, match="invalid subprotocol"):
        build_subprotocols(["no spaces"])
    with pytest.raises(InvalidHeaderFormat):
        parse_subprotocols("chat/1")


def test_build_extensions() -> None:
    assert build_extensions([]) == ""
    assert (
        build_extensions(
            [("permessage-deflate", [("client_max_window_bits", None), ("x", "10")]), ("y", [])]
        )
        == "permessage-deflate; client_max_window_bits; x=10, y"
    )
    with pytest.raises(ValueError, match="invalid extension parameter"):
        build_extensions([("ok", [("bad", "a b")])])


tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!#", min_size=1, max_size=12)


@given(
    st.lists(
        st.tuples(tokens, st.lists(st.tuples(tokens, st.none() | tokens), max_size=4)),
        max_size=5,
    )
)
def test_extensions_round_trip(extensions: list[tuple[str, list[tuple[str, str | None]]]]) -> None:
    assert parse_extensions(build_extensions(extensions)) == extensions


@given(st.lists(tokens, max_size=6))
def test_subprotocols_round_trip(names: list[str]) -> None:
    assert parse_subprotocols(build_subprotocols(names)) == names


@given(st.text(max_size=80))
def test_any_text_parses_or_fails_cleanly(value: str) -> None:
    for parse in (parse_extensions, parse_subprotocols, parse_connection, parse_upgrade):
        with contextlib.suppress(InvalidHeaderFormat):
            parse(value)
