"""The receiving part of the protocol core: frames parsed from the buffer into events.

``ProtocolReceiver`` parses every complete frame in the receive buffer. It
enforces every rule the header alone decides (opcode, reserved bits, control
frame size and fragmentation, masking direction, the message size limit)
before the payload is buffered; it counts the frames of a message
(``max_fragments``), runs the extensions' decoders, and decodes text
incrementally so that invalid UTF-8 fails with 1007 as soon as it arrives,
even inside a frame still arriving. Control frames are answered here: a pong
for a ping, our close frame for the peer's. A protocol violation fails the
connection (or waits, with ``defer_failures``). ``set_receive_budget`` bounds
what one call produces. A data frame of ``ASSEMBLE_SIZE`` bytes or more that
arrives in pieces is gathered apart from the buffer, in storage kept while
frames stream in; an I/O layer may read into it directly
(``receive_buffer()``, ``received_into()``). No I/O and no threads: the I/O
layer serializes the calls, but for ``inflate()``, which touches nothing the parser uses (see
``defer_inflate`` on ``ProtocolReceiver``).

This is the hot path: each frame costs a few attribute reads and calls, no
more; the opcodes are plain ints rather than ``Opcode`` members. Shorter
still, ``receive_message`` takes bytes that are exactly one whole message of
one frame (whole.py) and returns it, no event made; anything else it leaves
to ``receive_data``.
"""

from __future__ import annotations

import codecs

from ..exceptions import InvalidPayload, PayloadTooBig, ProtocolError, TooManyFragments
from .close_codes import CloseCode
from .deflate import PerMessageDeflate
from .events import Binary, Close, Deflated, Ping, Pong, Text
from .frames import Frame, Opcode
from .framing import MAX_CONTROL_PAYLOAD, parse_close_payload
from .masking import apply_mask
from .sending import _OPCODES, ProtocolSender
from .state import State
from .whole import whole_frame

__all__ = ["BYTES_PER_EXTRA_FRAGMENT", "ProtocolReceiver"]

#: Beyond ``max_fragments``, a message earns one more frame per this many bytes.
BYTES_PER_EXTRA_FRAGMENT = 16
#: Data frames of this many bytes or more are gathered apart from the buffer.
ASSEMBLE_SIZE = 64 * 1024

_VALID_OPCODES = frozenset(int(opcode) for opcode in Opcode)
# Plain ints for the per-frame path: reading Opcode.TEXT costs ~0.2 us a time.
_CONTINUATION = int(Opcode.CONTINUATION)
_TEXT = int(Opcode.TEXT)
_CONTROL_BIT = 0x08


class ProtocolReceiver(ProtocolSender):
    """Frames in: parsed, checked, decoded, answered, turned into events.

    It builds on ``ProtocolSender`` because receiving sends too: a pong for a
    ping, the echo of the peer's close frame, the close frame that fails the
    connection.

    ``defer_inflate`` (default False): when True and the negotiated
    extensions are exactly one ``PerMessageDeflate``, the parser doesn't
    inflate. Each frame of a compressed message (its first frame has RSV1)
    comes out as a ``Deflated`` event carrying the payload as received, and
    ``inflate()`` turns it into ``Text`` or ``Binary`` later, maybe in
    another thread: an I/O layer inflates a message in the thread that reads
    it, not in the one that parses. Uncompressed messages come out as usual.
    Control frames are parsed and answered as they come, in between. Until
    inflated, a compressed message is bounded by its bytes as received:
    ``max_size`` plus 1/16 plus 64 bytes (what deflate adds to data it can't
    compress), and the receive budget counts those bytes; ``inflate()``
    holds it to ``max_size`` once inflated. With any other set of
    extensions, the flag changes nothing.
    """

    __slots__ = ()

    def inflate(self, event: Deflated) -> Text | Binary:
        """Inflate (and for text, decode) a ``Deflated`` event; see ``defer_inflate``.

        Call it for every ``Deflated`` event, in the order received, one call
        at a time. It touches only the extension's decompressing state and
        its own count and decoder, never what the parser uses: it may run in
        one thread while another one feeds ``receive_data``. On a failure it
        raises and changes nothing else: call ``fail_inflate()`` with the
        error, under the lock that serializes the other calls.

        Raises:
            PayloadTooBig: the message is larger than ``max_size`` once inflated.
            InvalidPayload: the data doesn't inflate, or the text isn't UTF-8.
            ProtocolError: RSV1 is set on a continuation frame.
        """
        if event.first:
            self._inflated_size = 0
            self._inflate_decoder = None
            opcode = Opcode.TEXT if event.text else Opcode.BINARY
        else:
            opcode = Opcode.CONTINUATION
        size = self._inflated_size
        remaining = None if self.max_size is None else self.max_size - size
        frame = Frame(opcode, event.data, event.final, event.rsv1)
        payload = self.extensions[0].decode(frame, max_size=remaining).payload
        self._inflated_size = size + len(payload)
        if not event.text:
            return Binary(payload, event.final)
        decoder = self._inflate_decoder
        if decoder is None:
            if event.final:  # a message of one frame
                try:
                    return Text(payload.decode(), True)
                except UnicodeDecodeError as exc:
                    raise InvalidPayload(f"invalid UTF-8 in a text message: {exc.reason}") from None
            decoder = self._inflate_decoder = codecs.getincrementaldecoder("utf-8")()
        return Text(_decode_more(decoder, payload, event.final), event.final)

    def fail_inflate(self, exc: ProtocolError) -> None:
        """Fail the connection for an error ``inflate()`` raised: close frame, then stop.

        The error becomes ``protocol_error`` (unless the connection already
        failed for another one) and the close frame carries its close code.
        An error the parser keeps for later (``defer_failures``) came after
        the message that failed to inflate: it is dropped.
        """
        self._pending_failure = None
        if self.protocol_error is None:
            self.protocol_error = exc
        self.fail(exc.close_code, str(exc))

    def set_receive_budget(self, messages: int | None = None, size: int | None = None) -> None:
        """Bound what the parser produces before it pauses: whole messages, payload bytes.

        The parser pauses before the next data frame once it produced
        ``messages`` more final data frames or ``size`` more bytes of data
        frame payload, counted after decompression (as received for the
        ``Deflated`` frames of ``defer_inflate``; ``None``: no bound). Bytes
        received meanwhile stay buffered; control frames ahead of that data
        frame are still parsed. Set a new budget and call ``receive_data(b"")``
        to go on. An I/O layer uses it to bound the work done per read, and
        stops reading while ``receive_paused``.
        """
        self._budget_messages = messages
        self._budget_size = size

    @property
    def receive_paused(self) -> bool:
        """True once the budget of ``set_receive_budget`` is spent."""
        return (self._budget_messages is not None and self._budget_messages <= 0) or (
            self._budget_size is not None and self._budget_size <= 0
        )

    def receive_message(self, data: bytes | bytearray | memoryview) -> str | bytes | None:
        """``receive_data`` for the common case: ``data`` is one whole message of one frame.

        Returns the message (``str`` for text, ``bytes`` for binary) when the
        parser is idle (connection open, nothing buffered, no event waiting, no
        message or big frame in progress), no extension is negotiated, the budget allows a
        message, and ``data`` is exactly one final, uncompressed text or
        binary frame, masked as the side requires, within the size limits,
        its text valid UTF-8. The state then moves as ``receive_data`` would
        move it, but no event is queued: the caller has the message. Else it
        returns None and changes nothing: feed ``data`` to ``receive_data``,
        which gives the usual events, or the usual error.
        """
        if (
            self._buffer
            or self._events  # events of earlier bytes come first
            or self._in_opcode is not None
            or self._assembled is not None
            or self.extensions
            or self.state is not State.OPEN
            or self._discarding
            or self.receive_paused
        ):
            return None
        frame = whole_frame(data, self._masks is None)  # a server receives masked frames
        if frame is None:
            return None
        opcode, payload = frame
        length = len(payload)
        if (self.max_size is not None and length > self.max_size) or (
            self.max_frame_size is not None and length > self.max_frame_size
        ):
            return None
        message: str | bytes = payload
        if opcode == _TEXT:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                return None
        self._in_size = length  # the last message's figures, as _receive_data_frame leaves them
        self._in_frames = 1
        self._in_compressed = False
        self._assembly = None  # the stream ran dry: a big frame's storage goes, as in _parse_frames
        if self._budget_size is not None:
            self._budget_size -= length
        if self._budget_messages is not None:
            self._budget_messages -= 1
        return message

    # -- internals ---------------------------------------------------------------

    def _parse_frames(self) -> None:
        """Parse every complete frame in the buffer."""
        buffer = self._buffer
        while not self._discarding:
            header = self._header
            if header is None:
                try:
                    header = self._parse_header()
                except ProtocolError as exc:
                    self._fail_with(exc)
                    return
                if header is None:
                    return
                self._header = header
            opcode, fin, rsv1, length, mask, start = header
            if not opcode & _CONTROL_BIT and self.receive_paused:
                return  # the header waits in self._header for a new budget
            end = start + length
            if len(buffer) < end:
                if self._is_plain_text_frame(opcode, rsv1):
                    try:
                        self._decode_partial_text(mask, start)
                    except ProtocolError as exc:
                        self._fail_with(exc)
                elif length >= ASSEMBLE_SIZE:  # a data frame: control frames are small
                    self._start_assembly(start, length)
                return
            self._header = None
            if mask is not None:
                payload = apply_mask(memoryview(buffer)[start:end], mask)
            else:
                payload = bytes(memoryview(buffer)[start:end])
            del buffer[:end]
            if not buffer:
                self._assembly = None  # the stream ran dry: let the big frames' storage go
            try:
                if opcode & _CONTROL_BIT:
                    self._receive_control(opcode, payload)
                else:
                    self._receive_data_frame(opcode, fin, rsv1, payload)
            except ProtocolError as exc:
                self._fail_with(exc)
                return

    def _start_assembly(self, start: int, length: int) -> None:
        """Gather the rest of a big frame apart from ``_buffer``, from what arrived of it.

        Growing ``_buffer`` to a big frame's size and shrinking it back after
        each frame costs fresh memory every time: the allocator gives the
        pages back and the next frame faults them in again, about 500 page
        faults per MiB. The assembly storage is kept as long as frames
        stream in (something follows the frame when it completes), and let
        go when the buffer runs dry.
        """
        storage = self._assembly
        if storage is None or len(storage) < length:
            storage = self._assembly = bytearray(length)
        buffer = self._buffer
        got = len(buffer) - start
        storage[:got] = memoryview(buffer)[start:]  # same size: a copy, no resize
        buffer.clear()
        self._assembled = got

    def _assemble(self, data: bytes | bytearray | memoryview) -> memoryview | None:
        """Add ``data`` to the frame being gathered; return what follows it, or None.

        None: the frame needs more bytes, or it completed and failed the
        connection. Else the frame became an event, and the bytes after it
        (maybe none) go through the buffer as usual.
        """
        target = self.receive_buffer()
        assert target is not None
        incoming = memoryview(data)
        take = min(len(incoming), len(target))
        target[:take] = incoming[:take]
        target.release()
        rest = incoming[take:]
        if not self._gathered(take, more=bool(rest)):
            return None
        return rest

    def receive_buffer(self) -> memoryview | None:
        """Where the next bytes received belong, if a big frame is being gathered; else None.

        A writable view of the part of the frame's storage still missing: an
        I/O layer may read into it directly (saving a copy), then call
        ``received_into()``. Valid until that call.
        """
        got = self._assembled
        if got is None:
            return None
        assert self._header is not None and self._assembly is not None
        return memoryview(self._assembly)[got : self._header[3]]

    def received_into(self, size: int, *, more: bool) -> None:
        """``size`` bytes were read into ``receive_buffer()``'s view, from its start.

        ``more``: the read filled what it was given, so more bytes probably
        wait (the storage is kept for the next big frame); else it is let go
        once the frame is complete.
        """
        self._gathered(size, more=more)

    def _gathered(self, size: int, *, more: bool) -> bool:
        """Count ``size`` more bytes; emit the frame once whole. False: not whole yet, or failed."""
        assert self._header is not None and self._assembly is not None
        opcode, fin, rsv1, length, mask, _ = self._header
        got = self._assembled
        assert got is not None
        got += size
        if got < length:
            self._assembled = got
            return False
        self._assembled = None
        self._header = None
        frame = memoryview(self._assembly)[:length]
        payload = apply_mask(frame, mask) if mask is not None else bytes(frame)
        frame.release()
        if not more:
            self._assembly = None  # nothing streams in behind it: let it go
        try:
            self._receive_data_frame(opcode, fin, rsv1, payload)
        except ProtocolError as exc:
            self._fail_with(exc)
            return False
        return True

    def _is_plain_text_frame(self, opcode: int, rsv1: bool) -> bool:
        """True for a frame that carries uncompressed text of a well-formed message."""
        if opcode == _TEXT:
            return self._in_opcode is None and not rsv1
        return opcode == _CONTINUATION and self._in_opcode == _TEXT and not self._in_compressed

    def _decode_partial_text(self, mask: bytes | None, start: int) -> None:
        """Decode the text that arrived of an incomplete frame: invalid UTF-8 fails at once."""
        checked = self._partial_checked
        available = len(self._buffer) - start
        if available == checked:
            return
        chunk = memoryview(self._buffer)[start + checked : start + available]
        if mask is not None:
            shift = checked % 4
            data = apply_mask(chunk, mask[shift:] + mask[:shift])
        else:
            data = bytes(chunk)
        del chunk
        self._partial_text.append(self._decode_text(data, fin=False))
        self._partial_checked = available

    def _parse_header(self) -> tuple[int, bool, bool, int, bytes | None, int] | None:
        """Read and check the header at the front of the buffer, or return None if incomplete.

        Every rule that the header alone decides is enforced here, before the
        payload is buffered: opcode, reserved bits, control frame rules,
        masking direction and the size limit.
        """
        buffer = self._buffer
        available = len(buffer)
        if available < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin = bool(first & 0x80)
        rsv1 = bool(first & 0x40)
        opcode = first & 0x0F
        length = second & 0x7F
        masked = bool(second & 0x80)
        start = 2
        if opcode not in _VALID_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if first & 0x30 or (rsv1 and not self.extensions):
            raise ProtocolError("reserved bits must be 0 when no extension defines them")
        if opcode & _CONTROL_BIT:
            if not fin:
                raise ProtocolError("control frames must not be fragmented")
            if length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError("control frames carry at most 125 bytes")
            if rsv1:
                raise ProtocolError("reserved bits must be 0 on control frames")
        elif length == 126:
            if available < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            start = 4
        elif length == 127:
            if available < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            if length >> 63:
                raise ProtocolError("the most significant bit of a 64-bit length must be 0")
            start = 10
        if masked != (self._masks is None):  # a server has no mask source
            if masked:
                raise ProtocolError("a server must not mask the frames it sends")
            raise ProtocolError("a client must mask the frames it sends")
        mask = None
        if masked:
            if available < start + 4:
                return None
            mask = bytes(buffer[start : start + 4])
            start += 4
        frame_limit = self.max_frame_size
        if frame_limit is not None and length > frame_limit and not opcode & _CONTROL_BIT:
            raise PayloadTooBig(
                f"frame of {length} bytes exceeds the frame size limit of {frame_limit} bytes"
            )
        if self.max_size is not None and not opcode & _CONTROL_BIT:
            # Without extensions a frame may not exceed what its message has left.
            # With them it may be compressed: bound it by max_size here, and let
            # the extension check the decompressed size against what is left.
            limit = self.max_size
            if not self.extensions:
                if opcode == _CONTINUATION:
                    limit -= self._in_size
            else:
                # Deflate grows data it can't compress (5 bytes per stored block,
                # blocks of 128 bytes at memLevel 1): a message of max_size bytes
                # must still fit. The extension checks the inflated size exactly.
                limit += (limit >> 4) + 64
            if length > limit:
                raise PayloadTooBig(
                    f"frame of {length} bytes exceeds the message size limit of "
                    f"{self.max_size} bytes"
                )
        return opcode, fin, rsv1, length, mask, start

    def _receive_control(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            self._emit(Ping(payload))
            if self.close_sent is None:
                if self.answer_pings:
                    self._pong_owed = None  # this pong answers the older pings too
                    self._write_control(Opcode.PONG, payload)
                else:
                    self._pong_owed = payload  # the latest ping is answered later
        elif opcode == Opcode.PONG:
            self._emit(Pong(payload))
        else:
            code, reason = parse_close_payload(payload)
            self.close_received = Close(code, reason)
            self._emit(self.close_received)
            if self.close_sent is None:
                self.close_sent_first = False
                # Echo the code and the reason, as browsers and Node's ws do: a page
                # that closes with a reason finds it in its close event.
                echo = None if code == CloseCode.NO_STATUS_RCVD else code
                self._send_close_frame(payload, echo, reason)
            # Nothing may follow a close frame (RFC 6455 5.5.1).
            self._stop_reading(close_transport=False)

    def _receive_data_frame(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> None:
        if opcode == _CONTINUATION:
            if self._in_opcode is None:
                raise ProtocolError("continuation frame without a message to continue")
            opcode = self._in_opcode
            self._in_frames += 1
            if (
                self.max_fragments is not None
                and self._in_frames > self.max_fragments + self._in_size // BYTES_PER_EXTRA_FRAGMENT
            ):
                raise TooManyFragments(
                    f"message of {self._in_size} bytes arrived in over {self._in_frames - 1} "
                    "frames: too many for its size"
                )
        elif self._in_opcode is not None:
            raise ProtocolError("new message started before the previous one finished")
        else:
            self._in_opcode = opcode
            self._in_size = 0
            self._in_frames = 1
            self._in_compressed = rsv1

        if self.extensions:
            if self.defer_inflate and self._inflates_later():
                if rsv1 and self._in_frames > 1:
                    raise ProtocolError("RSV1 set on a continuation frame")
                if self._in_compressed:
                    self._defer_frame(opcode, fin, rsv1, payload)
                    return
            else:
                payload = self._decode_frame(opcode, fin, rsv1, payload)
        size = self._in_size + len(payload)
        if self.max_size is not None and size > self.max_size:
            raise PayloadTooBig(
                f"message of over {self.max_size} bytes exceeds the limit of {self.max_size}"
            )
        self._in_size = size

        if opcode == _TEXT:
            checked = self._partial_checked
            if checked:
                text = self._decode_text(payload[checked:], fin)
                text = "".join(self._partial_text) + text
                self._partial_checked = 0
                self._partial_text = []
            else:
                text = self._decode_text(payload, fin)
            self._emit(Text(text, fin))
        else:
            self._emit(Binary(payload, fin))
        if self._budget_size is not None:
            self._budget_size -= len(payload)
        if fin:
            self._in_opcode = None
            self._in_decoder = None
            if self._budget_messages is not None:
                self._budget_messages -= 1

    def _decode_frame(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> bytes:
        """Run a data frame through the extensions' decoders; return its payload."""
        frame = Frame(_OPCODES[opcode if self._in_frames == 1 else 0], payload, fin, rsv1)
        remaining = None if self.max_size is None else self.max_size - self._in_size
        for extension in reversed(self.extensions):
            frame = extension.decode(frame, max_size=remaining)
        if frame.rsv1:
            raise ProtocolError("reserved bit 1 set but no extension used it")
        return frame.payload

    def _inflates_later(self) -> bool:
        """True if ``defer_inflate`` applies: the one extension is permessage-deflate."""
        extensions = self.extensions
        return len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate)

    def _defer_frame(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> None:
        """Emit a frame of a compressed message as it came, for ``inflate()``."""
        size = self._in_size + len(payload)
        max_size = self.max_size
        if max_size is not None and size > max_size + (max_size >> 4) + 64:
            raise PayloadTooBig(
                f"compressed message of {size} bytes or more can't fit the limit of "
                f"{max_size} bytes"
            )
        self._in_size = size
        self._emit(Deflated(payload, opcode == _TEXT, self._in_frames == 1, fin, rsv1))
        if self._budget_size is not None:
            self._budget_size -= len(payload)
        if fin:
            self._in_opcode = None
            if self._budget_messages is not None:
                self._budget_messages -= 1

    def _decode_text(self, payload: bytes, fin: bool) -> str:
        """Decode one frame of a text message, failing as soon as the UTF-8 is invalid."""
        decoder = self._in_decoder
        if decoder is None:
            if fin:
                try:
                    return payload.decode()
                except UnicodeDecodeError as exc:
                    raise InvalidPayload(f"invalid UTF-8 in a text message: {exc.reason}") from None
            decoder = self._in_decoder = codecs.getincrementaldecoder("utf-8")()
        return _decode_more(decoder, payload, fin)

    def _fail_with(self, exc: ProtocolError) -> None:
        if self.defer_failures:
            self._pending_failure = exc
            self._stop_reading(close_transport=False)
            return
        self.protocol_error = exc
        self.fail(exc.close_code, str(exc))


def _decode_more(decoder: codecs.IncrementalDecoder, payload: bytes, fin: bool) -> str:
    """Decode a frame's text with the message's decoder, failing as soon as it is invalid."""
    try:
        text = decoder.decode(payload, fin)
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"invalid UTF-8 in a text message: {exc.reason}") from None
    pending = decoder.getstate()[0]
    # CPython's decoder waits for a third byte before rejecting a UTF-16
    # surrogate (ED A0-BF); reject it at once so invalid text fails fast.
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        raise InvalidPayload("invalid UTF-8 in a text message: encoded surrogate")
    return text
