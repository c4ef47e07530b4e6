"""Opening TCP connections within a deadline, the DNS lookup included.

``getaddrinfo()`` has no timeout: the system resolver gives up when it
likes (often 5 s per server and attempt). ``open_tcp()`` runs a host name's
lookup in a short-lived daemon thread (``syncws-dns``) and waits for it at most
until the deadline; a lookup that outlives its deadline finishes in the
background and is dropped. At most ``MAX_LOOKUPS`` such threads live at once;
past that, a lookup waits for a free slot, within its own deadline. IP
literals need no lookup and no thread.

Threads: ``open_tcp()`` runs in the caller's thread (``connect()``);
``syncws-dns`` threads only call ``getaddrinfo()`` and hand back the result.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

from ..deadline import Deadline

__all__ = ["MAX_LOOKUPS", "open_tcp", "resolve"]

#: Lookups running at once in background threads, across the process.
MAX_LOOKUPS = 16
_slots = threading.BoundedSemaphore(MAX_LOOKUPS)

AddrInfo = tuple[Any, ...]


class _Lookup:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: list[AddrInfo] = []
        self.error: BaseException | None = None


def resolve(host: str, port: int, deadline: Deadline) -> list[AddrInfo]:
    """``getaddrinfo(host, port)`` for a TCP connection, given up at ``deadline``.

    Raise ``TimeoutError`` at the deadline and ``socket.gaierror`` when the
    name doesn't resolve.
    """
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        pass
    else:  # a literal: getaddrinfo answers at once
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if deadline.when is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not _slots.acquire(timeout=deadline.remaining() or 0.0):
        raise deadline.timeout_error(f"waiting to resolve {host} (too many lookups in progress)")
    lookup = _Lookup()
    thread = threading.Thread(
        target=_run, args=(lookup, host, port), name="syncws-dns", daemon=True
    )
    try:
        thread.start()
    except BaseException:
        _slots.release()
        raise
    if not lookup.done.wait(deadline.remaining()):
        raise deadline.timeout_error(f"resolving {host}")
    if lookup.error is not None:
        raise lookup.error
    return lookup.result


def _run(lookup: _Lookup, host: str, port: int) -> None:
    """A ``syncws-dns`` thread: one lookup, then it ends."""
    try:
        lookup.result = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except BaseException as exc:
        lookup.error = exc
    finally:
        _slots.release()
        lookup.done.set()


def open_tcp(host: str, port: int, deadline: Deadline, what: str) -> socket.socket:
    """Resolve ``host`` and connect to the first address that answers, all by ``deadline``.

    ``what`` names the peer in errors ("the proxy 10.0.0.1:3128", say).
    Raise ``TimeoutError`` at the deadline, ``OSError`` (naming ``what``)
    when no address accepts.
    """
    try:
        infos = resolve(host, port, deadline)
    except socket.gaierror as exc:
        raise socket.gaierror(exc.errno, f"cannot resolve {what}: {exc.strerror}") from exc
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(address)
        except TimeoutError as exc:
            sock.close()
            raise deadline.timeout_error(f"connecting to {what}") from exc
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if not errors:  # pragma: no cover - getaddrinfo returns at least one address
        raise OSError(f"no address for {what}")
    first = errors[0]
    error = type(first)(first.errno, f"cannot connect to {what}: {first.strerror}")
    raise error from first
