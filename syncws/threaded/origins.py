"""``origins=``: allowed values and regular expressions, as websockets 15+ takes them.

The core's ``OriginPolicy`` is a sequence of strings (``None`` admits
requests without ``Origin``) or a predicate. ``origin_policy()`` turns a list
that also holds compiled patterns (``re.compile(r"https://.*\\.example\\.com")``)
into a predicate: a pattern must match the whole origin (``fullmatch``), as
in websockets. Plain functions: called once by ``serve()``, not per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ..protocol.handshake import OriginPolicy

__all__ = ["Origins", "origin_policy"]

#: What ``origins=`` accepts: strings, compiled patterns and ``None``, or a predicate.
Origins = Sequence[str | re.Pattern[str] | None] | Callable[[str | None], bool]


def origin_policy(origins: Origins | None) -> OriginPolicy | None:
    """Return ``origins`` in the core's form; raise ``TypeError`` for an entry of another type."""
    if origins is None or callable(origins):
        return origins
    if isinstance(origins, str | bytes):
        raise TypeError("origins is a list of origins, not one string: origins=[...]")
    values: list[str | None] = []
    patterns: list[re.Pattern[str]] = []
    for origin in origins:
        if isinstance(origin, re.Pattern):
            if not isinstance(origin.pattern, str):
                raise TypeError(f"origin patterns match str, not bytes: {origin.pattern!r}")
            patterns.append(origin)
        elif origin is None or isinstance(origin, str):
            values.append(origin)
        else:
            raise TypeError(f"origins holds strings, re.compile() patterns or None, not {origin!r}")
    if not patterns:
        return values
    return _Matcher(frozenset(values), tuple(patterns))


class _Matcher:
    """The predicate for a list with patterns: a listed value, or a pattern's full match."""

    def __init__(self, values: frozenset[str | None], patterns: tuple[re.Pattern[str], ...]):
        self.values = values
        self.patterns = patterns

    def __call__(self, origin: str | None) -> bool:
        if origin in self.values:
            return True
        if origin is None:
            return False
        return any(pattern.fullmatch(origin) for pattern in self.patterns)

    def __repr__(self) -> str:
        items = [*sorted(map(repr, self.values)), *(repr(p) for p in self.patterns)]
        return f"origins=[{', '.join(items)}]"
