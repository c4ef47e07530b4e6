"""Socket error codes as every system spells them: POSIX ``E*``, Windows ``WSAE*``.

Python turns the usual socket errors into the same exception classes
everywhere (``ConnectionResetError``, ``BlockingIOError``...), but the
``errno`` of an ``OSError`` raised by a Windows socket is its Winsock code:
10048 (``WSAEADDRINUSE``) where Linux says 98 (``EADDRINUSE``). Code that
tells errors apart by number compares with these sets instead of one
``errno`` constant. Pure data; any thread.
"""

from __future__ import annotations

import errno
from typing import Final

__all__ = ["ADDRESS_IN_USE", "ADDRESS_NOT_AVAILABLE", "BAD_DESCRIPTOR"]


def _codes(posix: str, winsock: str, winsock_value: int) -> frozenset[int]:
    # errno has the WSAE* names on Windows only; their values are fixed by Winsock.
    return frozenset({getattr(errno, posix), getattr(errno, winsock, winsock_value)})


#: The port is taken by another socket.
ADDRESS_IN_USE: Final = _codes("EADDRINUSE", "WSAEADDRINUSE", 10048)
#: The address isn't one of this machine's.
ADDRESS_NOT_AVAILABLE: Final = _codes("EADDRNOTAVAIL", "WSAEADDRNOTAVAIL", 10049)
#: The descriptor is closed, or not a socket (what select() says about it).
BAD_DESCRIPTOR: Final = _codes("EBADF", "WSAENOTSOCK", 10038) | {errno.ENOTSOCK}
