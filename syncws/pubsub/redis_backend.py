"""``RedisBackend``: a ``Hub`` that spans processes through Redis pub/sub.

One Redis channel per topic (``prefix + topic``). The process subscribes to
a channel while at least one of its own connections follows the topic.

One listener thread per backend owns the subscriber connection: it applies
subscription changes, reads messages and hands them to the hub, which
delivers with the non-blocking ``broadcast()``, so a slow WebSocket client
never stalls the listener (a stalled listener gets dropped by Redis for its
output buffer). The listener never dies: on any error it logs once per
outage at ERROR, backs off (with jitter; starting over once a connection has lasted),
reconnects and subscribes again to what the process follows at that moment.
Local subscriptions are kept while Redis is away.

Delivery between processes is at most once, as Redis pub/sub is: a process
that is disconnected when a message is published misses it.

Publishing goes through a separate connection pool and works from any
thread, also without a listener (a worker or a cron job that only publishes).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from ..exceptions import PayloadTooBig, PubSubError
from ..threaded.backoff import Backoff
from ..threaded.connection.broadcast import message_payload
from . import envelope
from .hub import Deliver

__all__ = ["RedisBackend"]

logger = logging.getLogger("syncws")

#: Default bound on a published message; Redis drops subscribers whose
#: output buffer passes 8 MB for a minute (32 MB at once) by default.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024


def _import_redis() -> Any:
    try:
        import redis  # noqa: PLC0415 - optional dependency, imported when used
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "RedisBackend needs the redis package: pip install redis (from a checkout "
            "of syncws: pip install '.[redis]')"
        ) from None
    return redis


class RedisBackend:
    """Carry a ``Hub``'s messages between processes over Redis.

    ``url`` is a redis-py URL (``redis://``, ``rediss://`` for TLS,
    ``unix://``); ``client_options`` go to ``redis.Redis.from_url``.
    ``prefix`` namespaces the channels. Messages larger than
    ``max_message_size`` bytes are refused with ``PayloadTooBig``.
    ``poll_interval`` bounds how long a subscription change waits for the
    listener thread; ``health_check_interval`` is how often an idle
    subscriber connection is checked with a PING (a half-open TCP connection
    is found within it).

    Thread-safe. ``connected`` and ``stats()`` tell how the listener fares.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "syncws:",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        client_options: Mapping[str, Any] | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 0.1,
        health_check_interval: float = 10.0,
    ) -> None:
        self._redis = _import_redis()
        self.url = url
        self.prefix = prefix
        self.max_message_size = max_message_size
        self.poll_interval = poll_interval
        #: This process's id in envelopes: its own messages come back and are skipped.
        self.origin = uuid.uuid4().bytes
        options: dict[str, Any] = {
            "socket_connect_timeout": 5.0,
            "socket_timeout": 5.0,
            "health_check_interval": health_check_interval,
        }
        if not url.startswith("unix:"):  # redis-py's unix socket connections refuse it
            options["socket_keepalive"] = True
        options.update(client_options or {})
        self._options = options
        self._publisher = self._redis.Redis.from_url(url, **options)
        self._backoff = backoff or Backoff(initial_delay=0.1, factor=2.0, max_delay=30.0)
        self._deliver: Deliver | None = None

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wanted: set[str] = set()
        self._version = 0  # bumped by every subscription change
        self._applied = -1  # the version the listener has applied in Redis
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = False
        self._counters = {
            "published": 0,
            "publish_failures": 0,
            "received": 0,
            "dropped": 0,
            "outages": 0,
        }
        #: The last error the listener met, if any.
        self.last_error: BaseException | None = None

    # -- Backend -------------------------------------------------------------------

    def attach(self, deliver: Deliver) -> None:
        """Hand messages from other processes to ``deliver`` (the hub does this)."""
        self._deliver = deliver

    def subscribe(self, topic: str) -> None:
        """Follow ``topic`` in Redis; starts the listener thread the first time."""
        with self._lock:
            if topic in self._wanted:
                return
            self._wanted.add(topic)
            self._version += 1
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="syncws-redis-listener", daemon=True
                )
                self._thread.start()

    def unsubscribe(self, topic: str) -> None:
        """Stop following ``topic`` in Redis."""
        with self._lock:
            if topic in self._wanted:
                self._wanted.discard(topic)
                self._version += 1

    def publish(self, topic: str, message: str | bytes, *, text: bool | None = None) -> None:
        """Publish to every process's subscribers of ``topic`` (this one's included).

        Through a hub, this process's subscribers were served already and the
        message is skipped when it comes back. Raise ``PubSubError`` if Redis
        can't be reached and ``PayloadTooBig`` past ``max_message_size``.
        """
        payload, is_text = message_payload(message, text, "publish()")
        if len(payload) > self.max_message_size:
            raise PayloadTooBig(
                f"message of {len(payload)} bytes is over max_message_size "
                f"({self.max_message_size}): Redis would drop slow subscribers for it"
            )
        data = envelope.encode(self.origin, payload, text=is_text)
        try:
            self._publisher.publish(self.prefix + topic, data)
        except self._redis.RedisError as exc:
            with self._lock:
                self._counters["publish_failures"] += 1
            raise PubSubError(f"couldn't publish to Redis at {self._safe_url()}: {exc}") from exc
        with self._lock:
            self._counters["published"] += 1

    def close(self) -> None:
        """Stop the listener thread and close the connections to Redis."""
        self._stop.set()
        with self._lock:
            thread = self._thread
            self._changed.notify_all()
        if thread is not None:
            thread.join()
        self._publisher.close()

    # -- health ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the listener holds a working subscriber connection to Redis."""
        return self._connected

    def stats(self) -> dict[str, int]:
        """Counters: published, publish_failures, received, dropped, outages."""
        with self._lock:
            return dict(self._counters)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until Redis has every subscription change made so far; False on timeout.

        Handy in tests and at startup: a message published in another process
        before that reaches no one here.
        """
        with self._lock:
            target = self._version
            return (
                self._changed.wait_for(
                    lambda: (self._applied >= target and self._connected) or self._stop.is_set(),
                    timeout,
                )
                and not self._stop.is_set()
            )

    # -- the listener thread -----------------------------------------------------------

    def _listen(self) -> None:
        pubsub = None
        subscribed: set[str] = set()
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._connect()
                    subscribed = set()
                subscribed = self._sync(pubsub, subscribed)
                message = pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.poll_interval
                )
                while message is not None:
                    self._handle(message)
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            except Exception as exc:  # the listener must never die
                self._on_error(exc)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                    pubsub = None
                self._stop.wait(self._backoff.next_delay())
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()
        self._connected = False

    def _connect(self) -> Any:
        client = self._redis.Redis.from_url(self.url, **self._options)
        client.ping()  # fail here, in the retry loop, if Redis is away
        return client.pubsub()

    def _sync(self, pubsub: Any, subscribed: set[str]) -> set[str]:
        """Subscribe and unsubscribe in Redis to match what the process follows."""
        with self._lock:
            wanted = set(self._wanted)
            version = self._version
        added, removed = wanted - subscribed, subscribed - wanted
        if added:
            pubsub.subscribe(*(self.prefix + topic for topic in sorted(added)))
        if removed:
            pubsub.unsubscribe(*(self.prefix + topic for topic in sorted(removed)))
        with self._lock:
            if not self._connected:
                self._connected = True
                self._backoff.connected()
                if self.last_error is not None:
                    logger.info("Redis at %s: connected again", self._safe_url())
                self._changed.notify_all()
            if self._applied != version:
                self._applied = version
                self._changed.notify_all()
        return wanted

    def _handle(self, message: Mapping[str, Any]) -> None:
        if message.get("type") != "message":
            return
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        topic = channel[len(self.prefix) :]
        try:
            received = envelope.decode(message["data"])
        except (ValueError, TypeError) as exc:
            with self._lock:
                self._counters["dropped"] += 1
            logger.warning("Redis channel %s: dropped a message: %s", channel, exc)
            return
        with self._lock:
            self._counters["received"] += 1
        if received.origin == self.origin or self._deliver is None:
            return  # published here: the hub delivered it locally already
        try:
            self._deliver(topic, received.payload, received.text)
        except Exception:
            logger.exception("Redis channel %s: delivering a message failed", channel)

    def _on_error(self, exc: Exception) -> None:
        with self._lock:
            first = self._connected or self.last_error is None
            if self._connected:
                self._counters["outages"] += 1
            self._connected = False
            self.last_error = exc
            self._changed.notify_all()
        if first:
            logger.error(
                "Redis at %s: subscriber connection lost (%s); retrying with backoff",
                self._safe_url(),
                exc,
            )
        else:
            logger.debug("Redis at %s: still unreachable: %s", self._safe_url(), exc)

    def _safe_url(self) -> str:
        """The URL without a password, for messages and logs."""
        scheme, sep, rest = self.url.partition("://")
        if "@" in rest:
            rest = "***@" + rest.rsplit("@", 1)[1]
        return scheme + sep + rest
