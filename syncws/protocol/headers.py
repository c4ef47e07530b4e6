"""HTTP headers: a case-insensitive multi-dict, and the WebSocket header grammars.

The grammars come from RFC 7230 (token, quoted-string, comma-separated lists
where empty elements are tolerated) and RFC 6455 sections 4.3 and 9.1
(``Sec-WebSocket-Extensions``, ``Sec-WebSocket-Protocol``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from ..exceptions import InvalidHeaderFormat

__all__ = [
    "ExtensionHeader",
    "Headers",
    "HeadersLike",
    "MultipleValuesError",
    "build_extensions",
    "build_subprotocols",
    "parse_connection",
    "parse_extensions",
    "parse_subprotocols",
    "parse_upgrade",
]

_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*)"')
_UNESCAPE = re.compile(r"\\(.)")
_PROTOCOL = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+(?:/[-!#$%&'*+.^_`|~0-9a-zA-Z]+)?")
# Field values: visible characters, spaces, tabs and obs-text; no CR, LF, NUL
# or other control characters, so a value can't inject a header or a body.
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

#: One extension in ``Sec-WebSocket-Extensions``: its name and parameters.
ExtensionHeader = tuple[str, list[tuple[str, str | None]]]

T = TypeVar("T")


class MultipleValuesError(KeyError):
    """``headers[name]`` was asked for a header that appears more than once."""


def is_token(value: str) -> bool:
    """Tell whether ``value`` is an HTTP token (RFC 7230 3.2.6)."""
    return _TOKEN.fullmatch(value) is not None


def check_header(name: str, value: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a token and ``value`` is safe to send.

    This refuses CR, LF, NUL and other control characters in values: they would
    let a value smuggle extra headers or a body into a message.
    """
    if not is_token(name):
        raise ValueError(f"invalid header name: {name!r}")
    if _VALUE.fullmatch(value) is None:
        raise ValueError(f"invalid header value for {name}: control characters are not allowed")


class Headers:
    """HTTP headers: case-insensitive names, several values per name, order kept.

    ``headers[name]`` returns the single value (``KeyError`` if absent,
    ``MultipleValuesError`` if repeated); ``get_all(name)`` returns every value.
    ``add()`` appends a value; ``headers[name] = value`` replaces all values,
    except for ``Set-Cookie``, which can't be folded into one line (RFC 9110
    5.3): setting it adds a cookie, as websockets' ``Headers`` does (``del``
    first to replace them). Names and values are checked, so application data
    can't inject headers.
    """

    __slots__ = ("_items",)

    def __init__(self, headers: HeadersLike | None = None, /) -> None:
        self._items: list[tuple[str, str]] = []
        if headers is not None:
            self.update(headers)

    def add(self, name: str, value: str) -> None:
        """Append a header, keeping any with the same name."""
        check_header(name, value)
        self._items.append((name, value))

    def update(self, headers: HeadersLike) -> None:
        """Append every header from a mapping, a ``Headers`` or ``(name, value)`` pairs."""
        pairs = headers.items() if isinstance(headers, Mapping | Headers) else headers
        for name, value in pairs:
            self.add(name, value)

    def __setitem__(self, name: str, value: str) -> None:
        check_header(name, value)
        if name.lower() != "set-cookie":
            del self[name]
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        self._items = [item for item in self._items if item[0].lower() != key]

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        if len(values) > 1:
            raise MultipleValuesError(name)
        return values[0]

    def get(self, name: str, default: T = None) -> str | T:  # type: ignore[assignment]
        """Return the header's value, ``default`` if absent; ``MultipleValuesError`` if repeated."""
        try:
            return self[name]
        except MultipleValuesError:
            raise
        except KeyError:
            return default

    def get_all(self, name: str) -> list[str]:
        """Return every value of the header, in order (maybe none)."""
        key = name.lower()
        return [value for item_name, value in self._items if item_name.lower() == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Iterator[tuple[str, str]]:
        """Yield every ``(name, value)`` pair, in order."""
        return iter(list(self._items))

    def copy(self) -> Headers:
        """Return an independent copy."""
        copy = Headers()
        copy._items = list(self._items)
        return copy

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def serialize(self) -> bytes:
        """Return the header lines, each ending with CRLF."""
        return "".join(f"{name}: {value}\r\n" for name, value in self._items).encode("latin-1")


HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


# -- grammar -----------------------------------------------------------------------


def _skip_ows(header: str, pos: int) -> int:
    match = _OWS.match(header, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _expect(
    pattern: re.Pattern[str], header: str, pos: int, name: str, what: str
) -> tuple[str, int]:
    match = pattern.match(header, pos)
    if match is None:
        raise InvalidHeaderFormat(name, header, pos, f"expected {what}")
    return match.group(), match.end()


def _parse_list(
    parse_item: Callable[[str, int, str], tuple[T, int]], header: str, name: str
) -> list[T]:
    """Parse ``#item``: comma-separated, with OWS, tolerating empty elements."""
    items: list[T] = []
    pos, end = 0, len(header)
    while True:
        pos = _skip_ows(header, pos)
        if pos == end:
            return items
        if header[pos] == ",":
            pos += 1
            continue
        item, pos = parse_item(header, pos, name)
        items.append(item)
        pos = _skip_ows(header, pos)
        if pos == end:
            return items
        if header[pos] != ",":
            raise InvalidHeaderFormat(name, header, pos, "expected a comma")
        pos += 1


def _parse_token(header: str, pos: int, name: str) -> tuple[str, int]:
    return _expect(_TOKEN, header, pos, name, "a token")


def _parse_protocol(header: str, pos: int, name: str) -> tuple[str, int]:
    return _expect(_PROTOCOL, header, pos, name, "a protocol")


def _parse_extension(header: str, pos: int, name: str) -> tuple[ExtensionHeader, int]:
    extension, pos = _parse_token(header, pos, name)
    params: list[tuple[str, str | None]] = []
    while True:
        after = _skip_ows(header, pos)
        if after == len(header) or header[after] != ";":
            return (extension, params), pos
        pos = _skip_ows(header, after + 1)
        param, pos = _parse_token(header, pos, name)
        value: str | None = None
        after = _skip_ows(header, pos)
        if after < len(header) and header[after] == "=":
            pos = _skip_ows(header, after + 1)
            if header.startswith('"', pos):
                quoted = _QUOTED.match(header, pos)
                if quoted is None:
                    raise InvalidHeaderFormat(name, header, pos, "expected a quoted string")
                value = _UNESCAPE.sub(r"\1", quoted.group(1))
                # RFC 6455 9.1: a quoted value must be a token once unquoted.
                if not is_token(value):
                    raise InvalidHeaderFormat(name, header, pos, "expected a token in quotes")
                pos = quoted.end()
            else:
                value, pos = _parse_token(header, pos, name)
        params.append((param, value))


def parse_connection(header: str, name: str = "Connection") -> list[str]:
    """Parse a ``Connection`` header into its options (tokens)."""
    return _parse_list(_parse_token, header, name)


def parse_upgrade(header: str, name: str = "Upgrade") -> list[str]:
    """Parse an ``Upgrade`` header into its protocols (``websocket``, ``h2c/1.0``...)."""
    return _parse_list(_parse_protocol, header, name)


def parse_subprotocols(header: str, name: str = "Sec-WebSocket-Protocol") -> list[str]:
    """Parse ``Sec-WebSocket-Protocol`` into its subprotocol names."""
    return _parse_list(_parse_token, header, name)


def parse_extensions(header: str, name: str = "Sec-WebSocket-Extensions") -> list[ExtensionHeader]:
    """Parse ``Sec-WebSocket-Extensions`` into ``(extension, [(param, value)...])`` pairs.

    The same extension may appear several times: each is a separate offer.
    """
    return _parse_list(_parse_extension, header, name)


def build_subprotocols(subprotocols: Iterable[str]) -> str:
    """Build a ``Sec-WebSocket-Protocol`` value; raise ``ValueError`` for a non-token."""
    names = list(subprotocols)
    for subprotocol in names:
        if not is_token(subprotocol):
            raise ValueError(f"invalid subprotocol name: {subprotocol!r}")
    return ", ".join(names)


def build_extensions(extensions: Iterable[tuple[str, Iterable[tuple[str, str | None]]]]) -> str:
    """Build a ``Sec-WebSocket-Extensions`` value from names and parameters."""
    parts = []
    for extension, params in extensions:
        items = [extension]
        for param, value in params:
            items.append(param if value is None else f"{param}={value}")
        for item in items:
            if not all(is_token(piece) for piece in item.split("=", 1)):
                raise ValueError(f"invalid extension parameter: {item!r}")
        parts.append("; ".join(items))
    return ", ".join(parts)
