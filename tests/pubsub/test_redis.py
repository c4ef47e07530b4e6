"""RedisBackend against a real redis-server: across hubs, topics, outages, slow clients."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import redis

from syncws import Connection, Hub, PayloadTooBig, PubSubError, RedisBackend
from syncws.protocol import Protocol, Side

from ..threaded.helpers import WAIT, connection_pair, refused_port, wait_until
from .conftest import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pairs() -> Iterator[list[tuple[Connection, Connection]]]:
    made = [connection_pair() for _ in range(4)]
    yield made
    for client, server in made:
        client._abort()
        server._abort()


@pytest.fixture
def two_hubs(redis_server: RedisServer) -> Iterator[tuple[Hub, Hub]]:
    """Two hubs, as two server processes would have, on one Redis."""
    first = Hub(RedisBackend(redis_server.url, poll_interval=0.02))
    second = Hub(RedisBackend(redis_server.url, poll_interval=0.02))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def backend(hub: Hub) -> RedisBackend:
    assert isinstance(hub.backend, RedisBackend)
    return hub.backend


def test_a_message_reaches_subscribers_in_every_process(
    two_hubs: tuple[Hub, Hub], pairs: list[tuple[Connection, Connection]]
) -> None:
    first, second = two_hubs
    (c1, s1), (c2, s2), (c3, s3), _ = pairs
    first.subscribe(s1, "room")
    second.subscribe(s2, "room")
    second.subscribe(s3, "elsewhere")
    assert backend(first).wait_subscribed(WAIT)
    assert backend(second).wait_subscribed(WAIT)
    assert first.publish("room", "hello") == 1  # the local subscriber, directly
    second.publish("room", b"\x00binary")
    # Each subscriber gets each message once, and text stays text. (Order holds
    # per publisher; a local publish may overtake one crossing Redis.)
    for client in (c1, c2):
        got = [client.recv(timeout=WAIT), client.recv(timeout=WAIT)]
        assert sorted(got, key=repr) == ["hello", b"\x00binary"]
    with pytest.raises(TimeoutError):
        c3.recv(timeout=0.1)
    with pytest.raises(TimeoutError):
        c1.recv(timeout=0.1)  # its own publish didn't come back twice
    assert backend(second).stats()["received"] == 2  # one from each hub
    assert backend(first).stats()["published"] == 1


def test_each_process_subscribes_only_to_what_its_clients_follow(
    two_hubs: tuple[Hub, Hub],
    pairs: list[tuple[Connection, Connection]],
    redis_server: RedisServer,
) -> None:
    first, second = two_hubs
    (_, s1), (c2, s2), _, _ = pairs
    first.subscribe(s1, "a")
    second.subscribe(s2, "b")
    assert backend(first).wait_subscribed(WAIT)
    assert backend(second).wait_subscribed(WAIT)
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert sorted(client.pubsub_channels()) == [b"syncws:a", b"syncws:b"]
        assert dict(client.pubsub_numsub("syncws:a", "syncws:b")) == {
            b"syncws:a": 1,
            b"syncws:b": 1,
        }
        # The last local subscriber leaves: the process leaves the channel.
        first.unsubscribe(s1)
        assert backend(first).wait_subscribed(WAIT)
        assert client.pubsub_channels() == [b"syncws:b"]
        # Also when it leaves by closing.
        c2.close()
        wait_until(lambda: client.pubsub_channels() == [])
    finally:
        client.close()


def test_redis_restart_keeps_local_subscriptions(
    two_hubs: tuple[Hub, Hub],
    pairs: list[tuple[Connection, Connection]],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = two_hubs
    (c1, s1), (c2, s2), _, _ = pairs
    first.subscribe(s1, "room")
    second.subscribe(s2, "room")
    assert backend(first).wait_subscribed(WAIT)
    assert backend(second).wait_subscribed(WAIT)
    with caplog.at_level(logging.INFO, logger="syncws"):
        redis_server.stop()
        wait_until(lambda: not backend(first).connected and not backend(second).connected)
        # Each listener has retried in vain at least once (a retry logs no ERROR).
        wait_until(lambda: min(backend(hub)._backoff.attempts for hub in two_hubs) >= 2)
        # Publishing while Redis is away: local subscribers get it, the error says the rest.
        with pytest.raises(PubSubError, match="couldn't publish"):
            first.publish("room", "lost for the others")
        assert c1.recv(timeout=WAIT) == "lost for the others"
        assert backend(first).stats()["publish_failures"] == 1
        assert second.subscribers("room") == [s2]  # kept while Redis is away
        redis_server.start()
        assert backend(first).wait_subscribed(WAIT)
        assert backend(second).wait_subscribed(WAIT)
    # The backoff notes the connection: it starts over once the connection has
    # lasted (not at once: a Redis that accepts and drops must not be hammered).
    for hub in two_hubs:
        assert backend(hub)._backoff._connected_at is not None
    first.publish("room", "back again")
    assert c2.recv(timeout=WAIT) == "back again"
    assert c1.recv(timeout=WAIT) == "back again"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    # One ERROR per backend per outage, not one per retry; INFO on recovery.
    assert len(errors) == 2
    assert all("subscriber connection lost" in r.getMessage() for r in errors)
    assert all("password" not in r.getMessage() for r in caplog.records)
    recovered = [r for r in caplog.records if "connected again" in r.getMessage()]
    assert len(recovered) == 2
    assert all(r.levelno == logging.INFO for r in recovered)
    assert backend(first).stats()["outages"] == 1
    assert backend(second).stats()["outages"] == 1


def test_listener_starts_while_redis_is_away_and_connects_later(
    redis_server: RedisServer, pairs: list[tuple[Connection, Connection]]
) -> None:
    redis_server.stop()
    hub = Hub(RedisBackend(redis_server.url, poll_interval=0.02))
    try:
        (c1, s1), _, _, _ = pairs
        hub.subscribe(s1, "room")
        assert not backend(hub).wait_subscribed(0.2)
        redis_server.start()
        assert backend(hub).wait_subscribed(WAIT)
        publisher = RedisBackend(redis_server.url)
        publisher.publish("room", "from a publisher-only process")
        publisher.close()
        assert c1.recv(timeout=WAIT) == "from a publisher-only process"
    finally:
        hub.close()


def test_a_client_that_never_reads_does_not_stall_the_listener(
    two_hubs: tuple[Hub, Hub], pairs: list[tuple[Connection, Connection]]
) -> None:
    first, second = two_hubs
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stalled = Connection(ours, Protocol(Side.SERVER), write_limit=64 * 1024)
    stalled.start_background()
    try:
        (c1, s1), _, _, _ = pairs
        second.subscribe(stalled, "feed")
        second.subscribe(s1, "feed")
        assert backend(second).wait_subscribed(WAIT)
        payload = b"x" * 16384
        received = []
        for i in range(200):
            first.publish("feed", i.to_bytes(4, "big") + payload)
            received.append(c1.recv(timeout=WAIT))
        assert [int.from_bytes(m[:4], "big") for m in received] == list(range(200))  # type: ignore[index]
        assert stalled.skipped_messages > 0
        assert backend(second).connected
    finally:
        stalled._abort()
        theirs.close()


def test_foreign_and_bad_messages_are_dropped_and_counted(
    two_hubs: tuple[Hub, Hub],
    pairs: list[tuple[Connection, Connection]],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, _ = two_hubs
    (c1, s1), _, _, _ = pairs
    first.subscribe(s1, "room")
    assert backend(first).wait_subscribed(WAIT)
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.publish("syncws:room", b"\x80\x04pickled data")
    finally:
        client.close()
    publisher = RedisBackend(redis_server.url)
    publisher.publish("room", "fine")
    publisher.close()
    assert c1.recv(timeout=WAIT) == "fine"
    assert backend(first).stats()["dropped"] == 1
    assert "dropped a message" in caplog.text


def test_delivery_errors_never_kill_the_listener(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_backend = RedisBackend(redis_server.url, poll_interval=0.02)
    calls = []

    def deliver(topic: str, payload: bytes, text: bool) -> None:
        calls.append(payload)
        if len(calls) == 1:
            raise RuntimeError("a bug in the application")

    redis_backend.attach(deliver)
    try:
        redis_backend.subscribe("t")
        redis_backend.subscribe("t")  # twice is once
        assert redis_backend.wait_subscribed(WAIT)
        publisher = RedisBackend(redis_server.url)
        publisher.publish("t", "one")
        publisher.publish("t", b"two")
        publisher.close()
        wait_until(lambda: len(calls) == 2)
        assert calls == [b"one", b"two"]
        assert "delivering a message failed" in caplog.text
    finally:
        redis_backend.close()
    assert not redis_backend.wait_subscribed(0)


def test_limits_and_urls(redis_server: RedisServer) -> None:
    publisher = RedisBackend(redis_server.url, max_message_size=10)
    try:
        with pytest.raises(PayloadTooBig, match="max_message_size"):
            publisher.publish("t", b"x" * 11)
        publisher.unsubscribe("never subscribed")
    finally:
        publisher.close()
    # Nothing listens there: the error names the server, never the password.
    with refused_port() as port:
        unreachable = RedisBackend(f"redis://:secret@127.0.0.1:{port}/0")
        try:
            with pytest.raises(PubSubError) as caught:
                unreachable.publish("t", "nobody home")
            assert "secret" not in str(caught.value)
            assert "***@127.0.0.1" in str(caught.value)
        finally:
            unreachable.close()


def test_wait_for_subscribers_waits_for_redis_too(
    two_hubs: tuple[Hub, Hub], pairs: list[tuple[Connection, Connection]]
) -> None:
    first, second = two_hubs
    (c1, s1), _, _, _ = pairs
    first.subscribe(s1, "room")
    # Once it returns, a publish from another process reaches the subscriber.
    assert first.wait_for_subscribers("room", timeout=WAIT)
    second.publish("room", "across")
    assert c1.recv(timeout=WAIT) == "across"
    backend(first).close()
    assert not first.wait_for_subscribers("room", timeout=WAIT)  # stopped: never subscribed
