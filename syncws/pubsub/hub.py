"""``Hub``: which connection follows which topic, and delivery to them.

All methods are callable from any thread. The hub's lock guards only its
own tables and is never held while writing to a socket: delivery goes through
``broadcast()``, which never blocks. A connection leaves all its topics by
itself when it closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Literal, Protocol

from ..threaded.connection import Connection
from ..threaded.connection.broadcast import broadcast, message_payload

__all__ = ["Backend", "Deliver", "Hub"]

logger = logging.getLogger("syncws")


class Backend(Protocol):
    """What carries messages between processes (see ``RedisBackend``)."""

    def attach(self, deliver: Deliver) -> None:
        """Call ``deliver(topic, payload, text)`` for messages from other processes."""

    def subscribe(self, topic: str) -> None:
        """Start receiving ``topic``: the first local subscriber joined."""

    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``: the last local subscriber left."""

    def publish(self, topic: str, message: str | bytes, *, text: bool | None = None) -> None:
        """Send a message to the other processes."""

    def close(self) -> None:
        """Stop, release connections and threads."""


class Deliver(Protocol):
    """What a backend calls with each message from another process: the hub's delivery."""

    def __call__(self, topic: str, payload: bytes, text: bool) -> object: ...


class Hub:
    """Topics that connections subscribe to; ``publish()`` reaches every subscriber.

    Without a backend, the hub serves one process and needs no server. With
    ``backend=RedisBackend(url)``, ``publish()`` in any process reaches the
    subscribers in every process; each process subscribes in Redis only to the
    topics its own connections follow.

    ``overflow`` is passed to ``broadcast()``: what happens to a subscriber
    whose backlog is past its ``write_limit``.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        overflow: Literal["skip"] | int = "skip",
    ) -> None:
        self.backend = backend
        self.overflow = overflow
        self._lock = threading.Lock()
        # Notified whenever a connection joins a topic (wait_for_subscribers()).
        self._joined = threading.Condition(self._lock)
        # Dicts, not sets: delivery follows subscription order, which is stable.
        self._subscribers: dict[str, dict[Connection, None]] = {}
        self._topics: dict[Connection, dict[str, None]] = {}
        # Connections that have our close callback (until they close).
        self._watched: set[Connection] = set()
        if backend is not None:
            backend.attach(self._deliver)

    def subscribe(self, connection: Connection, *topics: str) -> None:
        """Add ``connection`` to ``topics``; it leaves them all when it closes."""
        self._check_topics(topics)
        new_topics = []
        with self._lock:
            followed = self._topics.get(connection)
            if followed is None:
                followed = self._topics[connection] = {}
            # One close callback per connection, however often it leaves all
            # its topics and joins again (room switches).
            watch = connection not in self._watched
            if watch:
                self._watched.add(connection)
            for topic in topics:
                subscribers = self._subscribers.setdefault(topic, {})
                if not subscribers:
                    new_topics.append(topic)
                subscribers[connection] = None
                followed[topic] = None
            if self.backend is not None:
                for topic in new_topics:
                    self.backend.subscribe(topic)
            self._joined.notify_all()
        if watch:
            connection.add_close_callback(self._forget)

    def unsubscribe(self, connection: Connection, *topics: str) -> None:
        """Remove ``connection`` from ``topics``, or from all of its topics if none are given."""
        self._check_topics(topics)
        with self._lock:
            followed = self._topics.get(connection)
            if followed is None:
                return
            for topic in topics or list(followed):
                if topic in followed:
                    del followed[topic]
                    self._leave(connection, topic)
            if not followed:
                del self._topics[connection]

    def publish(
        self, topic: str, message: str | bytes | bytearray | memoryview, *, text: bool | None = None
    ) -> int:
        """Send ``message`` to the subscribers of ``topic``; return how many local ones got it.

        Never blocks on a slow subscriber. With a backend, the message also
        goes to the other processes (at most once: a process that is away
        from the broker at that moment misses it); ``PubSubError`` if the
        broker can't take it (local subscribers got it all the same).
        """
        self._check_topics((topic,))
        payload, is_text = message_payload(message, text, "publish()")
        delivered = self._deliver(topic, payload, is_text)
        if self.backend is not None:
            self.backend.publish(topic, payload, text=is_text)
        return delivered

    def topics(self, connection: Connection | None = None) -> set[str]:
        """The topics ``connection`` follows; without one, every topic with a local subscriber."""
        with self._lock:
            if connection is None:
                return set(self._subscribers)
            return set(self._topics.get(connection, ()))

    def subscribers(self, topic: str) -> list[Connection]:
        """The local connections subscribed to ``topic``, in the order they subscribed."""
        with self._lock:
            return list(self._subscribers.get(topic, ()))

    def subscriber_count(self, topic: str) -> int:
        """How many local connections follow ``topic``."""
        with self._lock:
            return len(self._subscribers.get(topic, ()))

    def wait_for_subscribers(
        self, topic: str, count: int = 1, timeout: float | None = 10.0
    ) -> bool:
        """Block until ``topic`` has at least ``count`` local subscribers; False on timeout.

        For tests and startup code: a client's ``connect()`` returns once the
        handshake is done, before its handler has subscribed, so a message
        published right away could reach no one. With a backend that has
        ``wait_subscribed()`` (``RedisBackend``), also wait until the broker
        follows the topic for this process. Any thread; a handler may call it
        right after subscribing, to know that messages published from now on
        in any process reach it.
        """
        self._check_topics((topic,))
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not self._joined.wait_for(
                lambda: len(self._subscribers.get(topic, ())) >= count, timeout
            ):
                return False
        wait_subscribed = getattr(self.backend, "wait_subscribed", None)
        if wait_subscribed is None:
            return True
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return bool(wait_subscribed(remaining))

    def close(self) -> None:
        """Forget every subscription and close the backend, if any."""
        with self._lock:
            self._subscribers.clear()
            self._topics.clear()
            self._watched.clear()
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes, text: bool) -> int:
        """Broadcast to the local subscribers of ``topic`` (any thread, never blocks)."""
        with self._lock:
            subscribers = list(self._subscribers.get(topic, ()))
        if not subscribers:
            return 0
        return broadcast(subscribers, payload, text=text, overflow=self.overflow)

    def _forget(self, connection: Connection) -> None:
        """A subscribed connection closed (background thread): drop its subscriptions."""
        with self._lock:
            self._watched.discard(connection)
        self.unsubscribe(connection)

    def _leave(self, connection: Connection, topic: str) -> None:
        # Lock held.
        subscribers = self._subscribers[topic]
        del subscribers[connection]
        if not subscribers:
            del self._subscribers[topic]
            if self.backend is not None:
                self.backend.unsubscribe(topic)

    @staticmethod
    def _check_topics(topics: Iterable[object]) -> None:
        for topic in topics:
            if not isinstance(topic, str) or not topic:
                raise TypeError(f"topics are non-empty strings, not {topic!r}")
