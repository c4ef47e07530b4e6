"""Reassembling messages from the pieces the core emits, one data frame each.

``MessageAssembler`` joins them one at a time as they arrive; ``join_frames``
joins a message whose pieces are all there (the threaded layer's inbox).
"""

from __future__ import annotations

from collections.abc import Sequence

from .events import Binary, Text

__all__ = ["MessageAssembler", "join_frames"]


class MessageAssembler:
    """Join ``Text``/``Binary`` pieces into whole messages.

    ``add()`` returns the message once its final piece arrived, ``None``
    before. A message that came in one frame is returned as it is, without a
    copy. Memory is bounded by the core's ``max_size`` and ``max_fragments``.
    """

    __slots__ = ("_pieces",)

    def __init__(self) -> None:
        self._pieces: list[str] | list[bytes] = []

    @property
    def in_progress(self) -> bool:
        """True while a fragmented message has started and not finished."""
        return bool(self._pieces)

    def add(self, event: Text | Binary) -> str | bytes | None:
        """Take the next piece; return the whole message if it was the last one."""
        pieces = self._pieces
        if event.final:
            if not pieces:
                return event.data
            pieces.append(event.data)  # type: ignore[arg-type]
            self._pieces = []
            if isinstance(event, Text):
                return "".join(pieces)  # type: ignore[arg-type]
            return b"".join(pieces)  # type: ignore[arg-type]
        pieces.append(event.data)  # type: ignore[arg-type]
        return None


def join_frames(frames: Sequence[Text | Binary]) -> str | bytes:
    """The whole message from all its pieces at once; one piece is returned without a copy."""
    if len(frames) == 1:
        return frames[0].data
    if isinstance(frames[0], Text):
        return "".join(frame.data for frame in frames)  # type: ignore[misc]
    return b"".join(frame.data for frame in frames)  # type: ignore[misc]
