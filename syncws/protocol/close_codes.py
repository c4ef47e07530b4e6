"""Close codes from RFC 6455 section 7.4 and the IANA registry, and their rules."""

from __future__ import annotations

import enum

# Defined in the exceptions module, a leaf: its messages use it, and the core imports it.
from ..exceptions import describe_close

__all__ = ["CloseCode", "describe_close", "is_valid_on_wire"]


class CloseCode(enum.IntEnum):
    """Close codes with a meaning defined by RFC 6455 or registered with IANA."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# Codes an endpoint may put in a close frame (RFC 6455 7.4.1 and 7.4.2):
# 1005, 1006 and 1015 are reserved for reporting and never go on the wire;
# 1004 is reserved; 1016-2999 are reserved for future RFCs; 3000-4999 are
# for libraries, frameworks and applications.
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def is_valid_on_wire(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame."""
    return code in _WIRE_CODES or 3000 <= code <= 4999
