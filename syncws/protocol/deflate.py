"""permessage-deflate (RFC 7692): negotiation and per-message compression.

Compression is on by default in syncws, as browsers expect. A message is
compressed as a whole: its first frame carries RSV1, its continuation frames
continue the same deflate stream, and the final frame drops the trailing
``00 00 ff ff`` that a sync flush produces (RFC 7692 7.2.1).

Memory: a zlib compressor costs ``2**(window_bits + 2) + 2**(mem_level + 9)``
bytes plus about 6 KiB, a decompressor ``2**window_bits`` plus about 7 KiB.
The defaults follow websockets' (12-bit windows where the server chooses,
``mem_level`` 5), and zlib objects live only while a message is being
compressed or decompressed (``PerMessageDeflate`` explains how context
takeover survives that). docs/performance.rst has the measurements.

Window size 8: zlib cannot compress with a 256-byte window (it would use
512, which a peer holding us to 256 could not decode). When the peer limits
our window to 8, we accept and simply never compress: permessage-deflate lets
any message go uncompressed. Decompression works with every window.

Pure computation, like the rest of the core: any thread may use an extension
object, one at a time (the connection's lock serializes them). Its two
halves keep apart state (``encode`` the compressing side's, ``decode`` the
decompressing side's): with ``Protocol.defer_inflate``, one thread may call
``decode`` without the lock while another thread compresses under it.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Sequence

from ..exceptions import InvalidPayload, NegotiationError, PayloadTooBig, ProtocolError
from .extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameters,
    ServerExtensionFactory,
)
from .frames import Frame, Opcode

__all__ = [
    "DEFAULT_COMPRESS_LEVEL",
    "DEFAULT_COMPRESS_MIN_SIZE",
    "DEFAULT_MEM_LEVEL",
    "DEFAULT_WINDOW_BITS",
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
]

EXTENSION_NAME = "permessage-deflate"
#: Messages shorter than this are sent uncompressed. 0 by default: every
#: message is compressed, as browsers and the other Python libraries do, since
#: some peers mishandle uncompressed messages on a compressed connection (the
#: Autobahn driver kosoku does). Raise it to save CPU on tiny messages.
DEFAULT_COMPRESS_MIN_SIZE = 0
#: zlib's level for what we compress: 1 is fastest, 9 smallest. ``compress_level`` on
#: the extension factories changes it.
DEFAULT_COMPRESS_LEVEL = 6
#: zlib's memLevel (1-9) for what we compress: the size of its hash table and
#: output buffer, ``2**(mem_level + 9)`` bytes. zlib's own default is 8; 5, as
#: websockets uses, takes 112 KiB less per compressor for 0.2% more bytes on
#: JSON with 12-bit windows (up to 5% with 15-bit ones: bench/deflate_ratio.py).
DEFAULT_MEM_LEVEL = 5
#: The server's window, and its bound on the client's window when the client's
#: offer lets it choose (``client_max_window_bits`` without a value, as browsers
#: send): 2**12 = 4 KiB, as websockets does. 15 (32 KiB) saves 7% to 36% of
#: the bytes on JSON (bench/deflate_ratio.py) and keeps eight times more bytes
#: per connection and direction between messages.
DEFAULT_WINDOW_BITS = 12
_FLUSH_TAIL = b"\x00\x00\xff\xff"
_MIN_BITS, _MAX_BITS = 8, 15
# zlib compresses with a window of at least 2**9 bytes.
_MIN_COMPRESS_BITS = 9
_PARAMETERS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


class PerMessageDeflate(Extension):
    """permessage-deflate on one connection.

    ``local_*`` parameters apply to what we compress, ``remote_*`` to what the
    peer compressed and we decompress. Not thread-safe, like the core.

    zlib state exists only while a message is being compressed or
    decompressed: it is made at the message's first frame and dropped at its
    last, in the same call for a message of one frame. With context takeover,
    the last ``2**window_bits`` bytes of what went through (the LZ77 window
    that the peer's side holds too) are kept as plain bytes and given to the
    next message's compressor or decompressor as a preset dictionary, which
    yields the same stream semantics at a fraction of the memory: an idle
    connection holds at most two windows of bytes, no zlib state, and zlib's
    buffers are freed in the thread that allocated them. ``keep_state=True``
    keeps both zlib objects for the connection's lifetime instead (less CPU
    per small message with large windows, more memory: see the performance
    page).

    A peer may end a message's deflate stream with a final block (BFINAL=1,
    RFC 7692 7.2.3.4): the message decodes as usual, and the next one gets a
    new decompressor (preset with the last window of bytes, as far as this
    extension keeps it: with ``keep_state=True``, the last frame's), in
    either mode. Compressed data after a final block in the same message
    would be lost: it fails the connection with 1007 instead. A message is
    never delivered emptier than it was sent.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool = False,
        local_no_context_takeover: bool = False,
        remote_max_window_bits: int = _MAX_BITS,
        local_max_window_bits: int = _MAX_BITS,
        compress_min_size: int = DEFAULT_COMPRESS_MIN_SIZE,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        keep_state: bool = False,
    ) -> None:
        if not _MIN_BITS <= remote_max_window_bits <= _MAX_BITS:
            raise ValueError("remote_max_window_bits must be between 8 and 15")
        if not _MIN_BITS <= local_max_window_bits <= _MAX_BITS:
            raise ValueError("local_max_window_bits must be between 8 and 15")
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.compress_min_size = compress_min_size
        self.compress_level = compress_level
        self.mem_level = _checked_mem_level(mem_level)
        self.keep_state = keep_state
        # zlib can't honour a window of 8 when compressing: send uncompressed.
        self._compresses = local_max_window_bits >= _MIN_COMPRESS_BITS
        # Made lazily at a message's first frame (see the class docstring).
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        # With context takeover and without keep_state: the last window's
        # worth of what we compressed / decompressed, for the next message.
        self._sent_window = b""
        self._received_window = b""
        # Whether the message being sent / received is compressed.
        self._encoding = False
        self._decoding = False
        # The bytes received after the peer finished its deflate stream (a
        # final block) in the message being received; None before that.
        self._after_final: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    def _new_compressor(self, zdict: bytes = b"") -> zlib._Compress:
        if zdict:
            return zlib.compressobj(
                self.compress_level,
                zlib.DEFLATED,
                -self.local_max_window_bits,
                self.mem_level,
                zdict=zdict,
            )
        return zlib.compressobj(
            self.compress_level, zlib.DEFLATED, -self.local_max_window_bits, self.mem_level
        )

    def _new_decompressor(self, zdict: bytes = b"") -> zlib._Decompress:
        if zdict:
            return zlib.decompressobj(-self.remote_max_window_bits, zdict=zdict)
        return zlib.decompressobj(-self.remote_max_window_bits)

    def encode(self, frame: Frame) -> Frame:
        """Compress a data frame we send, if its message is worth compressing."""
        if frame.opcode != Opcode.CONTINUATION:
            # The first frame decides for the whole message.
            self._encoding = self._compresses and not (
                frame.fin and len(frame.payload) < self.compress_min_size
            )
        if not self._encoding:
            return frame
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self._new_compressor(self._sent_window)
        data = compressor.compress(frame.payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        takeover = not self.local_no_context_takeover
        if takeover and not self.keep_state:
            self._sent_window = _slide(self._sent_window, frame.payload, self.local_max_window_bits)
        if frame.fin:
            data = data.removesuffix(_FLUSH_TAIL)
            if not (takeover and self.keep_state):
                self._compressor = None
        rsv1 = frame.opcode != Opcode.CONTINUATION
        return Frame(frame.opcode, data, frame.fin, rsv1, frame.rsv2, frame.rsv3)

    def sharing_key(self) -> Hashable | None:
        """Equal for connections that compress a whole message the same way.

        A message compressed on its own refers to nothing sent before, so
        any connection's peer inflates it, context takeover or not; with
        takeover, ``sent_standalone`` then slides the window the peer now
        has, as ``encode`` does. Only ``keep_state``'s zlib objects can't
        follow a stream they didn't compress: ``None``, nothing to share.
        """
        if self._compresses and not self.local_no_context_takeover and self.keep_state:
            return None
        return (
            self.name,
            self._compresses,
            self.local_max_window_bits,
            self.compress_level,
            self.mem_level,
            self.compress_min_size,
        )

    def encode_standalone(self, frame: Frame) -> Frame:
        """Compress a whole message with a fresh compressor, leaving this one untouched."""
        if not self._compresses_alone(frame.payload):
            return frame
        compressor = self._new_compressor()
        data = compressor.compress(frame.payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return Frame(frame.opcode, data.removesuffix(_FLUSH_TAIL), frame.fin, True)

    def sent_standalone(self, payload: bytes) -> None:
        """A shared message went out: with context takeover, the peer's window now ends with it.

        Only if ``encode_standalone`` compressed it: the peer's inflater
        never sees a message sent uncompressed.
        """
        if not self.local_no_context_takeover and self._compresses_alone(payload):
            self._sent_window = _slide(self._sent_window, payload, self.local_max_window_bits)

    def _compresses_alone(self, payload: bytes) -> bool:
        """Whether ``encode_standalone`` compresses a message of these bytes."""
        return self._compresses and len(payload) >= self.compress_min_size

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Decompress a data frame we received, within ``max_size`` bytes."""
        if frame.opcode:  # not a continuation (0): the message's first frame
            self._decoding = frame.rsv1
        elif frame.rsv1:
            raise ProtocolError("RSV1 set on a continuation frame")
        if not self._decoding:
            return frame
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = self._new_decompressor(self._received_window)
        data = frame.payload + _FLUSH_TAIL if frame.fin else frame.payload
        if self._after_final is None:
            limit = 0 if max_size is None else max_size + 1
            try:
                payload = decompressor.decompress(data, limit)
            except zlib.error as exc:
                raise InvalidPayload(f"invalid compressed data: {exc}") from None
            if max_size is not None and (len(payload) > max_size or decompressor.unconsumed_tail):
                raise PayloadTooBig(
                    f"message exceeds the size limit once decompressed "
                    f"({max_size} more bytes were allowed)"
                )
            if decompressor.eof:
                # The peer ended its deflate stream with a final block (BFINAL=1,
                # RFC 7692 7.2.3.4): only an empty block may follow in this message.
                self._after_final = decompressor.unused_data
        else:
            payload = b""
            self._after_final += data
        if self._after_final is not None:
            _check_nothing_after_final(self._after_final)
        takeover = not self.remote_no_context_takeover
        if takeover and not self.keep_state:
            self._received_window = _slide(
                self._received_window, payload, self.remote_max_window_bits
            )
        if frame.fin:
            if self._after_final is not None:
                self._after_final = None
                if takeover and self.keep_state:
                    # A finished stream decodes nothing more: the next message gets a
                    # new decompressor, preset with what this frame decoded.
                    self._decompressor = None
                    self._received_window = _slide(b"", payload, self.remote_max_window_bits)
            if not (takeover and self.keep_state):
                self._decompressor = None
        return Frame(frame.opcode, payload, frame.fin, False, frame.rsv2, frame.rsv3)


def _check_nothing_after_final(data: bytes) -> None:
    """Raise ``InvalidPayload`` unless ``data``, after a final block, holds no data.

    Only empty blocks may follow (the RFC's ``00`` byte and the appended
    ``00 00 ff ff`` make one): anything they decode would be lost.
    """
    probe = zlib.decompressobj(-_MAX_BITS)
    try:
        lost = probe.decompress(data, 1)
    except zlib.error as exc:
        raise InvalidPayload(f"invalid data after the final deflate block: {exc}") from None
    if lost:
        raise InvalidPayload("compressed data after the final deflate block of a message")


def _slide(window: bytes, data: bytes, bits: int) -> bytes:
    """The last ``2**bits`` bytes of ``window + data``: the LZ77 window after ``data``."""
    size = 1 << bits
    if len(data) >= size:
        return bytes(data[-size:])
    return (window + data)[-size:]


# -- negotiation ---------------------------------------------------------------------


def _parse_bits(name: str, value: str | None) -> int:
    if value is None or not value.isdigit() or value.startswith("0"):
        raise NegotiationError(f"{name} must be an integer from 8 to 15, not {value!r}")
    bits = int(value)
    if not _MIN_BITS <= bits <= _MAX_BITS:
        raise NegotiationError(f"{name} must be an integer from 8 to 15, not {value!r}")
    return bits


def _read_params(params: ExtensionParameters) -> dict[str, str | None]:
    """Check names, duplicates and the valueless flags; return the parameters by name."""
    found: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMETERS:
            raise NegotiationError(f"unknown permessage-deflate parameter: {name}")
        if name in found:
            raise NegotiationError(f"duplicate permessage-deflate parameter: {name}")
        if name.endswith("no_context_takeover") and value is not None:
            raise NegotiationError(f"{name} takes no value")
        found[name] = value
    return found


def _check_not_accepted(accepted: Sequence[Extension]) -> None:
    if any(extension.name == EXTENSION_NAME for extension in accepted):
        raise NegotiationError("permessage-deflate accepted twice")


def _checked_level(level: int) -> int:
    if not 0 <= level <= 9:
        raise ValueError("compress_level must be between 0 and 9")
    return level


def _checked_mem_level(level: int) -> int:
    if not 1 <= level <= 9:
        raise ValueError("mem_level must be between 1 and 9")
    return level


def _check_bits_setting(name: str, bits: int | None) -> None:
    if bits is not None and not _MIN_BITS <= bits <= _MAX_BITS:
        raise ValueError(f"{name} must be between 8 and 15")


class ClientPerMessageDeflateFactory(ClientExtensionFactory):
    """A client's permessage-deflate offer.

    The defaults offer what browsers offer: ``permessage-deflate;
    client_max_window_bits``, letting the server pick the window for what the
    client compresses.

    ``client_max_window_bits=True`` offers the parameter without a value; an
    integer (8-15) also limits our compressor to that window.
    ``compress_level`` (0-9) and ``mem_level`` (1-9) tune zlib for what the
    client sends; ``keep_state`` is ``PerMessageDeflate``'s (keep zlib objects
    between messages).
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool = True,
        compress_min_size: int = DEFAULT_COMPRESS_MIN_SIZE,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        keep_state: bool = False,
    ) -> None:
        _check_bits_setting("server_max_window_bits", server_max_window_bits)
        if not isinstance(client_max_window_bits, bool):
            _check_bits_setting("client_max_window_bits", client_max_window_bits)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_min_size = compress_min_size
        self.compress_level = _checked_level(compress_level)
        self.mem_level = _checked_mem_level(mem_level)
        self.keep_state = keep_state

    def offer(self) -> ExtensionParameters:
        """Return the offer's parameters."""
        params: list[tuple[str, str | None]] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits is not False:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def accept(self, params: ExtensionParameters, accepted: Sequence[Extension]) -> Extension:
        """Check the server's response against our offer (RFC 7692 7.1) and build the extension."""
        _check_not_accepted(accepted)
        found = _read_params(params)

        server_bits = _MAX_BITS
        if "server_max_window_bits" in found:
            server_bits = _parse_bits("server_max_window_bits", found["server_max_window_bits"])
            if (
                self.server_max_window_bits is not None
                and server_bits > self.server_max_window_bits
            ):
                raise NegotiationError(
                    f"server_max_window_bits={server_bits} is larger than the "
                    f"{self.server_max_window_bits} offered"
                )
        elif self.server_max_window_bits is not None:
            # RFC 7692 7.1.2.1: the server must answer a server_max_window_bits offer.
            raise NegotiationError("server_max_window_bits offered but not confirmed")

        if self.server_no_context_takeover and "server_no_context_takeover" not in found:
            raise NegotiationError("server_no_context_takeover offered but not confirmed")

        client_bits = (
            _MAX_BITS
            if isinstance(self.client_max_window_bits, bool)
            else (self.client_max_window_bits)
        )
        if "client_max_window_bits" in found:
            if self.client_max_window_bits is False:
                raise NegotiationError("client_max_window_bits in response but not offered")
            bits = _parse_bits("client_max_window_bits", found["client_max_window_bits"])
            if bits > client_bits:
                raise NegotiationError(
                    f"client_max_window_bits={bits} is larger than the {client_bits} offered"
                )
            client_bits = bits

        return PerMessageDeflate(
            remote_no_context_takeover="server_no_context_takeover" in found,
            local_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in found,
            remote_max_window_bits=server_bits,
            local_max_window_bits=client_bits,
            compress_min_size=self.compress_min_size,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            keep_state=self.keep_state,
        )


class ServerPerMessageDeflateFactory(ServerExtensionFactory):
    """A server's policy for accepting permessage-deflate offers.

    With the defaults the server accepts any valid offer, keeps the
    compression context between messages, and spends little memory per
    connection (the same defaults as websockets):

    - ``server_max_window_bits`` (8-15): the window of what the server
      compresses, named in every response. ``None`` (the default): 12 bits
      (``DEFAULT_WINDOW_BITS``), named only when the client's offer asks for
      a window (then the smaller of the two): a server may always compress
      with a smaller window than the client decodes, and some clients reject
      the parameter when they did not offer it. With 8 the server sends
      uncompressed messages (zlib can't compress with 256 bytes).
    - ``client_max_window_bits`` (8-15): the bound on the client's window,
      which is also the server's decompression window, when the client's
      offer lets the server choose it (browsers' offers do). ``None`` (the
      default): 12 bits. 15 leaves the client free. A client that doesn't
      offer the parameter compresses with up to 15 bits; with
      ``require_client_max_window_bits`` the server declines its offer.
    - ``server_no_context_takeover`` / ``client_no_context_takeover`` forbid
      compressing a message with the previous ones as history: less ratio on
      repetitive traffic, and no bytes kept between messages.
    - ``compress_level`` (0-9, default 6), ``mem_level`` (1-9, default 5) and
      ``keep_state`` (default False) tune zlib for what the server sends; see
      ``PerMessageDeflate``.

    For more ratio at more memory per connection, raise the windows to 15 and
    ``mem_level`` to 8 (zlib's defaults): docs/performance.rst has figures.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        require_client_max_window_bits: bool = False,
        compress_min_size: int = DEFAULT_COMPRESS_MIN_SIZE,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        keep_state: bool = False,
    ) -> None:
        _check_bits_setting("server_max_window_bits", server_max_window_bits)
        _check_bits_setting("client_max_window_bits", client_max_window_bits)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.require_client_max_window_bits = require_client_max_window_bits
        self.compress_min_size = compress_min_size
        self.compress_level = _checked_level(compress_level)
        self.mem_level = _checked_mem_level(mem_level)
        self.keep_state = keep_state

    def negotiate(
        self, params: ExtensionParameters, accepted: Sequence[Extension]
    ) -> tuple[ExtensionParameters, Extension]:
        """Accept one client offer (RFC 7692 7.1), or raise ``NegotiationError`` to decline it."""
        _check_not_accepted(accepted)
        found = _read_params(params)
        response: list[tuple[str, str | None]] = []

        server_no_context = self.server_no_context_takeover or (
            "server_no_context_takeover" in found
        )
        if server_no_context:
            response.append(("server_no_context_takeover", None))
        client_no_context = self.client_no_context_takeover or (
            "client_no_context_takeover" in found
        )
        if client_no_context:
            response.append(("client_no_context_takeover", None))

        # Compressing with a smaller window than the client decodes needs no
        # word in the response (RFC 7692 7.1.2.1 only bounds it from above).
        server_bits = self.server_max_window_bits or DEFAULT_WINDOW_BITS
        if "server_max_window_bits" in found:
            requested = _parse_bits("server_max_window_bits", found["server_max_window_bits"])
            server_bits = min(server_bits, requested)
            response.append(("server_max_window_bits", str(server_bits)))
        elif self.server_max_window_bits is not None:
            response.append(("server_max_window_bits", str(server_bits)))

        # Decompressing with the largest window is always safe; a smaller one
        # saves memory only once our response binds the client to it.
        client_bits = _MAX_BITS
        if "client_max_window_bits" in found:
            offered = found["client_max_window_bits"]
            client_bits = self.client_max_window_bits or DEFAULT_WINDOW_BITS
            if offered is not None:
                client_bits = min(client_bits, _parse_bits("client_max_window_bits", offered))
            response.append(("client_max_window_bits", str(client_bits)))
        elif self.require_client_max_window_bits:
            raise NegotiationError("the offer does not let the server limit the client's window")

        extension = PerMessageDeflate(
            remote_no_context_takeover=client_no_context,
            local_no_context_takeover=server_no_context,
            remote_max_window_bits=client_bits,
            local_max_window_bits=server_bits,
            compress_min_size=self.compress_min_size,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            keep_state=self.keep_state,
        )
        return response, extension
