"""The WebSocket protocol state machine for one connection, without I/O.

An I/O layer feeds it what it reads (``receive_data``, ``receive_eof``), asks
it to send (``send_text``, ``send_close``, ...), and then collects what came
out: ``events_received()`` for the application and ``data_to_send()`` for the
socket. ``should_close_transport`` tells when the TCP connection should go.

``ClientProtocol`` and ``ServerProtocol`` add the opening handshake; this
class alone, built in the OPEN state, speaks frames only.

``Protocol`` is built in parts, each adding methods to one set of fields:
state.py declares the fields (and ``Side``, ``State``), sending.py sends
frames and closes, receiving.py parses frames, and this module holds what an
I/O layer calls to feed the protocol, collect its output and learn how the
connection ended, plus the hooks of the opening handshake. No I/O and no
threads: the I/O layer serializes the calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidState,
)
from .close_codes import CloseCode
from .extensions import Extension
from .receiving import BYTES_PER_EXTRA_FRAGMENT, ProtocolReceiver
from .state import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_SIZE, Event, Side, State

__all__ = [
    "BYTES_PER_EXTRA_FRAGMENT",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_SIZE",
    "Event",
    "Protocol",
    "Side",
    "State",
]

_NORMAL_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)


class Protocol(ProtocolReceiver):
    """Frames, messages and the closing handshake for one connection.

    Not thread-safe: the I/O layer serializes calls (one lock, or one thread).
    None of its methods block.

    ``max_size`` bounds a received message in bytes after decompression
    (``None``: no bound); a larger one fails the connection with 1009 before it
    is buffered. ``max_fragments`` bounds the frames of one message: up to that
    many, plus one for every 16 bytes of payload, so a large message cut into
    sensible pieces passes while a flood of tiny or empty frames fails with
    1009 (``None``: no bound).

    The sending methods (``send_text``, ``send_close``, ``fail``, ...) come
    from ``ProtocolSender``; ``set_receive_budget``, ``receive_paused`` and,
    for ``defer_inflate`` (compressed messages inflated later, maybe in
    another thread), ``inflate`` and ``fail_inflate`` from
    ``ProtocolReceiver``; the fields and their meaning from ``ProtocolState``.
    """

    __slots__ = ()

    # -- feeding the protocol --------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes read from the network and turn them into events.

        Never raises for what the peer sent: a protocol violation fails the
        connection (see ``protocol_error``), a failed handshake sets
        ``handshake_exc``.
        """
        if self._discarding:
            return
        if self._assembled is not None:
            rest = self._assemble(data)
            if rest is None:
                return  # the frame needs more, or it failed the connection
            data = rest
        self._buffer += data
        if self.state is State.CONNECTING:
            # A handshake that completes ends in _open(), which parses the
            # frames that came right behind it: nothing more to do here.
            self._receive_handshake()
            return
        self._parse_frames()

    def receive_eof(self) -> None:
        """Record that the TCP connection ended: the peer closed it, or we did."""
        if self._eof_received:
            return
        self._eof_received = True
        if self._pending_failure is not None:
            self.protocol_error, self._pending_failure = self._pending_failure, None
        if self.state is State.CONNECTING:
            self._receive_handshake_eof()
        self.state = State.CLOSED
        self._stop_reading(close_transport=True)

    # -- collecting results ----------------------------------------------------

    def events_received(self) -> list[Event]:
        """Return the events produced since the last call, oldest first."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> list[bytes]:
        """Return the bytes to write since the last call, in order (maybe empty)."""
        output = self._output
        self._output = []
        return output

    @property
    def should_close_transport(self) -> bool:
        """True once the TCP connection should be closed by us now.

        That is after a failed handshake, after we failed the connection, once
        EOF was received, or on a server once the closing handshake completed
        (RFC 6455 7.1.1). A client whose closing handshake completed waits for
        the server to close TCP first; its I/O layer closes after a timeout.
        """
        if self._close_transport:
            return True
        return (
            self.side is Side.SERVER
            and self.close_sent is not None
            and self.close_received is not None
        )

    @property
    def failure_pending(self) -> bool:
        """True while a protocol error waits for ``fail_pending()`` (see ``defer_failures``)."""
        return self._pending_failure is not None

    def fail_pending(self) -> None:
        """Act on a deferred protocol error now: queue the close frame and stop."""
        exc = self._pending_failure
        if exc is not None:
            self._pending_failure = None
            self.protocol_error = exc
            self.fail(exc.close_code, str(exc))

    @property
    def receiving(self) -> bool:
        """False once no more events can come: close received, connection failed, or EOF."""
        return not self._discarding

    @property
    def close_code(self) -> int | None:
        """The connection close code (RFC 6455 7.1.5), or None while not closed.

        The code of the received close frame (1005 if it had none); 1006 when
        the TCP connection ended without one.
        """
        if self.close_received is not None:
            return self.close_received.code
        if self.state is State.CLOSED:
            return CloseCode.ABNORMAL_CLOSURE
        return None

    @property
    def close_reason(self) -> str:
        """The reason in the received close frame, or ``""``."""
        return self.close_received.reason if self.close_received is not None else ""

    def close_exc(self) -> ConnectionClosed:
        """Build the ``ConnectionClosed`` exception that describes how the connection ended.

        ``ConnectionClosedOK`` when the peer's close frame and ours (where
        sent) both had 1000, 1001 or no code; ``ConnectionClosedError``
        otherwise, including when no close frame arrived.
        """
        received, sent = self.close_received, self.close_sent
        exc_type: type[ConnectionClosed] = ConnectionClosedError
        if (
            received is not None
            and received.code in _NORMAL_CODES
            and (sent is None or sent.code in _NORMAL_CODES)
        ):
            exc_type = ConnectionClosedOK
        exc = exc_type(
            received.code if received is not None else None,
            received.reason if received is not None else "",
            sent.code if sent is not None else None,
            sent.reason if sent is not None else "",
            we_closed_first=self.close_sent_first,
        )
        if self.protocol_error is not None:
            exc.__cause__ = self.protocol_error
        return exc

    # -- hooks for the handshake, used by ClientProtocol and ServerProtocol ----

    def _receive_handshake(self) -> None:
        """Consume handshake bytes from ``self._buffer``; a subclass implements it."""
        raise InvalidState("this protocol object has no opening handshake")

    def _receive_handshake_eof(self) -> None:
        """React to EOF during the handshake; a subclass implements it."""
        raise InvalidState("this protocol object has no opening handshake")

    def _open(self, extensions: Sequence[Extension], subprotocol: str | None) -> None:
        """Finish a successful handshake: frames flow from now on."""
        self.extensions = list(extensions)
        self.subprotocol = subprotocol
        self.state = State.OPEN
        # Frames may have arrived right behind the handshake.
        self._parse_frames()

    def _fail_handshake(self, exc: InvalidHandshake) -> None:
        """Finish a failed handshake: nothing more is read, TCP should close."""
        self.handshake_exc = exc
        self.state = State.CLOSED
        self._stop_reading(close_transport=True)
