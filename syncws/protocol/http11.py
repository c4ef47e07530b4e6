"""HTTP/1.1 requests and responses for the opening handshake, with hard limits.

The parsers work on a ``bytearray`` that the caller owns and fills as bytes
arrive. They return ``None`` until a whole message is there, then remove
exactly that message from the front of the buffer: whatever follows (frames
the peer sent right after the handshake) stays for the frame parser. Every
limit is checked as bytes arrive, so a peer that never finishes its request
can't make us buffer more than ``Limits.max_head_size``.
"""

from __future__ import annotations

import dataclasses
import http
import re

from ..exceptions import InvalidMessage
from .headers import Headers, HeadersLike, is_token

__all__ = [
    "Limits",
    "Request",
    "Response",
    "error_response",
    "parse_request",
    "parse_response",
]

_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
_REQUEST_TARGET = re.compile(rb"/[\x21-\x7e]*")
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_NO_BODY_STATUSES = {204, 304}


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the HTTP parser accepts.

    ``max_line``: bytes in the request or status line and in each header line.
    ``max_headers``: number of header lines. ``max_head_size``: bytes in the
    whole head. ``max_body``: bytes in a response body (error pages only: a
    101 has none).
    """

    max_line: int = 8192
    max_headers: int = 128
    max_head_size: int = 65536
    max_body: int = 2**20


def _invalid(message: str, status: int = 400) -> InvalidMessage:
    exc = InvalidMessage(message)
    exc.status = status
    return exc


@dataclasses.dataclass(slots=True)
class Request:
    """An HTTP request: the client's opening handshake."""

    path: str
    headers: Headers
    method: str = "GET"

    def serialize(self) -> bytes:
        """Return the request as bytes for the wire."""
        head = f"{self.method} {self.path} HTTP/1.1\r\n".encode()
        return head + self.headers.serialize() + _CRLF


@dataclasses.dataclass(slots=True)
class Response:
    """An HTTP response: 101 to accept a WebSocket, anything else to refuse it.

    ``status_code`` and ``reason_phrase`` are websockets' names for ``status``
    and ``reason`` (read and write).
    """

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    @property
    def status_code(self) -> int:
        """The status (websockets' name)."""
        return self.status

    @status_code.setter
    def status_code(self, value: int) -> None:
        self.status = value

    @property
    def reason_phrase(self) -> str:
        """The reason phrase (websockets' name)."""
        return self.reason

    @reason_phrase.setter
    def reason_phrase(self, value: str) -> None:
        self.reason = value

    def serialize(self) -> bytes:
        """Return the response as bytes for the wire."""
        head = f"HTTP/1.1 {self.status} {self.reason}\r\n".encode()
        return head + self.headers.serialize() + _CRLF + self.body


def error_response(status: int, text: str, headers: HeadersLike | None = None) -> Response:
    """Build a plain-text response that refuses or replaces a WebSocket upgrade.

    ``text`` is the whole body: never put request data in it.
    """
    body = text.encode() if text.endswith("\n") else (text + "\n").encode()
    response_headers = Headers(headers)
    if "Content-Type" not in response_headers:
        response_headers["Content-Type"] = "text/plain; charset=utf-8"
    response_headers["Content-Length"] = str(len(body))
    response_headers["Connection"] = "close"
    return Response(status, _reason(status), response_headers, body)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# -- parsing -----------------------------------------------------------------------


def _find_head(buffer: bytearray, limits: Limits, what: str) -> int | None:
    """Return the end of the head (after the blank line), or None if it isn't all there.

    Raise as soon as the bytes already received break a limit.
    """
    end = buffer.find(_END_OF_HEAD, 0, limits.max_head_size + 4)
    if end >= 0:
        return end + 4
    if len(buffer) > limits.max_head_size:
        raise _invalid(f"{what} head exceeds {limits.max_head_size} bytes", 431)
    first_line_end = buffer.find(_CRLF)
    if first_line_end < 0 and len(buffer) > limits.max_line:
        raise _invalid(f"{what} line exceeds {limits.max_line} bytes", 414)
    last_line_start = buffer.rfind(_CRLF) + 2
    if len(buffer) - last_line_start > limits.max_line:
        raise _invalid(f"header line exceeds {limits.max_line} bytes", 431)
    if buffer.count(_CRLF) > limits.max_headers + 1:
        raise _invalid(f"more than {limits.max_headers} headers", 431)
    return None


# Names and values that nearly every handshake carries, decoded once: a
# server holding thousands of connections keeps one copy of each.
_COMMON = {
    text.encode(): text
    for text in (
        "Host",
        "Upgrade",
        "Connection",
        "Origin",
        "User-Agent",
        "Cookie",
        "Authorization",
        "Pragma",
        "Cache-Control",
        "Accept-Encoding",
        "Accept-Language",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Accept",
        "Date",
        "Server",
        "websocket",
        "13",
        "no-cache",
        "keep-alive, Upgrade",
        "gzip, deflate, br, zstd",
        "permessage-deflate; client_max_window_bits",
    )
}
# The common strings that are valid header names: not checked again per request.
_COMMON_TOKENS = frozenset(raw for raw, text in _COMMON.items() if is_token(text))


def _split_head(head: bytes, limits: Limits, what: str) -> tuple[bytes, Headers]:
    """Split a complete head into its first line and its headers, checking every rule."""
    lines = head.split(_CRLF)
    first, header_lines = lines[0], lines[1:]
    if len(first) > limits.max_line:
        raise _invalid(f"{what} line exceeds {limits.max_line} bytes", 414)
    if len(header_lines) > limits.max_headers:
        raise _invalid(f"more than {limits.max_headers} headers", 431)
    headers = Headers()
    items = headers._items
    for line in header_lines:
        if len(line) > limits.max_line:
            raise _invalid(f"header line exceeds {limits.max_line} bytes", 431)
        name_bytes, colon, value_bytes = line.partition(b":")
        name = _COMMON.get(name_bytes) or name_bytes.decode("latin-1")
        if not colon or (name_bytes not in _COMMON_TOKENS and not is_token(name)):
            if line[:1] in (b" ", b"\t"):
                raise _invalid("obsolete line folding is not supported")
            raise _invalid(f"invalid header line: {name[:40]!r}")
        value_bytes = value_bytes.strip(b" \t")
        if _FIELD_VALUE.fullmatch(value_bytes) is None:
            raise _invalid(f"invalid characters in the {name} header")
        # Checked above as Headers.add() would check it: append directly.
        items.append((name, _COMMON.get(value_bytes) or value_bytes.decode("latin-1")))
    return first, headers


def parse_request(buffer: bytearray, limits: Limits | None = None) -> Request | None:
    """Parse a WebSocket opening request from the front of ``buffer``.

    Return None while incomplete; raise ``InvalidMessage`` (with ``status``
    set to the HTTP status to answer) when it is malformed or too large.
    Only ``GET`` with an origin-form target (``/path?query``) over HTTP/1.1 is
    a WebSocket handshake: other methods get 405, other versions 505.
    """
    limits = limits or Limits()
    end = _find_head(buffer, limits, "request")
    if end is None:
        return None
    first, headers = _split_head(bytes(buffer[: end - 4]), limits, "request")
    del buffer[:end]
    parts = first.split(b" ")
    if len(parts) != 3:
        raise _invalid("malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1":
        if re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version):
            raise _invalid("WebSocket needs HTTP/1.1", 505)
        raise _invalid("malformed request line")
    if not is_token(method.decode("latin-1")):
        raise _invalid("malformed request line")
    if method != b"GET":
        raise _invalid("a WebSocket handshake is a GET request", 405)
    if _REQUEST_TARGET.fullmatch(target) is None:
        raise _invalid("the request target must be a path starting with /")
    return Request(target.decode("ascii"), headers)


def parse_response(
    buffer: bytearray, limits: Limits | None = None, *, eof: bool = False
) -> Response | None:
    """Parse the server's response to the opening handshake from the front of ``buffer``.

    Return None while incomplete; raise ``InvalidMessage`` when malformed or
    too large. A non-101 response's body is read by ``Content-Length`` or
    chunked encoding, or, with neither, until the connection ends: pass
    ``eof=True`` once it did.
    """
    limits = limits or Limits()
    end = _find_head(buffer, limits, "status")
    if end is None:
        if eof:
            raise _invalid("connection closed before the end of the response head")
        return None
    first, headers = _split_head(bytes(buffer[: end - 4]), limits, "status")
    match = _STATUS_LINE.fullmatch(first)
    if match is None:
        raise _invalid(f"malformed status line: {first[:60]!r}")
    status = int(match.group(1))
    reason = (match.group(2) or b"").decode("latin-1")
    if status < 100:
        raise _invalid(f"invalid status code {status}")
    found = _find_body(buffer, end, status, headers, limits, eof=eof)
    if found is None:
        return None
    body_end, body = found
    del buffer[:body_end]
    return Response(status, reason, headers, body)


def _find_body(
    buffer: bytearray, start: int, status: int, headers: Headers, limits: Limits, *, eof: bool
) -> tuple[int, bytes] | None:
    """Return where the body ends in ``buffer`` and the body, or None if it isn't all there."""
    if status < 200 or status in _NO_BODY_STATUSES:
        return start, b""
    if "Transfer-Encoding" in headers:
        if headers.get_all("Transfer-Encoding") != ["chunked"]:
            raise _invalid("unsupported Transfer-Encoding")
        return _find_chunked_end(buffer, start, limits, eof)
    if "Content-Length" in headers:
        # Repeated, the header must say the same each time (RFC 9110 8.6). Only
        # ASCII digits: str.isdigit() also takes "²", which int() refuses.
        values = set(headers.get_all("Content-Length"))
        value = values.pop()
        if values or _CONTENT_LENGTH.fullmatch(value) is None:
            raise _invalid("invalid Content-Length")
        length = int(value)
        if length > limits.max_body:
            raise _invalid(f"response body exceeds {limits.max_body} bytes")
        if len(buffer) - start < length:
            if eof:
                raise _invalid("connection closed before the end of the response body")
            return None
        return start + length, bytes(buffer[start : start + length])
    if len(buffer) - start > limits.max_body:
        raise _invalid(f"response body exceeds {limits.max_body} bytes")
    return (len(buffer), bytes(buffer[start:])) if eof else None


def _find_chunked_end(
    buffer: bytearray, start: int, limits: Limits, eof: bool
) -> tuple[int, bytes] | None:
    """Read a chunked body: return where it ends and its content, or None if incomplete."""
    chunks: list[bytes] = []
    pos, total = start, 0
    while True:
        line_end = buffer.find(_CRLF, pos, pos + 1024)
        if line_end < 0:
            if len(buffer) - pos > 1024:
                raise _invalid("invalid chunk size line")
            break
        size_text = bytes(buffer[pos:line_end]).split(b";", 1)[0].strip()
        if re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_text) is None:
            raise _invalid("invalid chunk size")
        size = int(size_text, 16)
        total += size
        if total > limits.max_body:
            raise _invalid(f"response body exceeds {limits.max_body} bytes")
        pos = line_end + 2
        if size == 0:
            # Skip trailers up to the blank line.
            trailer_end = buffer.find(_CRLF, pos, pos + limits.max_head_size)
            while trailer_end > pos:
                pos = trailer_end + 2
                trailer_end = buffer.find(_CRLF, pos, pos + limits.max_head_size)
            if trailer_end < 0:
                break
            return trailer_end + 2, b"".join(chunks)
        if len(buffer) < pos + size + 2:
            break
        if buffer[pos + size : pos + size + 2] != _CRLF:
            raise _invalid("chunk not followed by CRLF")
        chunks.append(bytes(buffer[pos : pos + size]))
        pos += size + 2
    if eof:
        raise _invalid("connection closed before the end of the response body")
    return None
