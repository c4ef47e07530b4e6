"""``TransportState``: how far a connection's TCP connection got towards closed.

A value, guarded by the connection's ``_lock`` (see ``core.py``, which moves
it, always forward, and whose ``_close_socket`` is the one path to CLOSED).
No thread runs here.
"""

from __future__ import annotations

import enum

__all__ = ["TransportState"]


class TransportState(enum.IntEnum):
    """How far the TCP connection got towards closed; it only moves forward.

    OPEN -> DRAINING (``_close_when_flushed``: we close) -> WRITE_SHUT (the
    outbox is written: FIN sent) -> CLOSED. The peer's EOF (or a write error)
    moves OPEN, DRAINING or WRITE_SHUT to PEER_CLOSED, which closes once the
    outbox is written. ``_close_socket`` moves any state to CLOSED; the
    descriptor is closed (RELEASED) once no thread polls it.
    """

    #: Both directions open.
    OPEN = 0
    #: We close: write what is queued, then send FIN.
    DRAINING = 1
    #: FIN sent; reading on until the peer's EOF (bounded by ``close_timeout``).
    WRITE_SHUT = 2
    #: The peer's EOF (or a write error) came: close once the outbox is written.
    PEER_CLOSED = 3
    #: Shut down and forgotten by the reactor; the descriptor stays open while a thread polls it.
    CLOSED = 4
    #: The descriptor is closed.
    RELEASED = 5
