"""Hub in one process: subscriptions, delivery, cleanup, and what it asks of a backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from syncws import Connection, Hub, connect
from syncws.testing import run_server

from ..threaded.helpers import WAIT, connection_pair

pytestmark = pytest.mark.timeout(30)


class RecordingBackend:
    """A backend that records what the hub asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.deliver: object = None

    def attach(self, deliver: object) -> None:
        self.deliver = deliver

    def subscribe(self, topic: str) -> None:
        self.calls.append(("subscribe", topic))

    def unsubscribe(self, topic: str) -> None:
        self.calls.append(("unsubscribe", topic))

    def publish(self, topic: str, message: str | bytes, *, text: bool | None = None) -> None:
        self.calls.append(("publish", topic, repr(message), repr(text)))

    def close(self) -> None:
        self.calls.append(("close",))


@pytest.fixture
def pairs() -> Iterator[list[tuple[Connection, Connection]]]:
    made = [connection_pair() for _ in range(3)]
    yield made
    for client, server in made:
        client._abort()
        server._abort()


def closed_and_forgotten(connection: Connection, client: Connection) -> None:
    """Close ``connection`` from its peer and wait until close callbacks ran."""
    done = threading.Event()
    connection.add_close_callback(lambda _: done.set())  # runs after the hub's
    client.close()
    assert done.wait(WAIT)


def test_publish_reaches_the_subscribers_of_a_topic(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), (c2, s2), (c3, s3) = pairs
    with Hub() as hub:
        hub.subscribe(s1, "news", "sport")
        hub.subscribe(s2, "news")
        hub.subscribe(s3, "sport")
        assert hub.publish("news", "headline") == 2
        assert hub.publish("sport", b"score") == 2
        assert hub.publish("weather", "sunny") == 0
        assert hub.publish("news", b"as text", text=True) == 2
        assert [c1.recv(timeout=WAIT) for _ in range(3)] == ["headline", b"score", "as text"]
        assert [c2.recv(timeout=WAIT) for _ in range(2)] == ["headline", "as text"]
        assert c3.recv(timeout=WAIT) == b"score"


def test_introspection(pairs: list[tuple[Connection, Connection]]) -> None:
    (_, s1), (_, s2), _ = pairs
    hub = Hub()
    hub.subscribe(s1, "a", "b")
    hub.subscribe(s2, "b")
    hub.subscribe(s2, "b")  # twice is once
    assert hub.topics(s1) == {"a", "b"}
    assert hub.topics(s2) == {"b"}
    assert hub.topics() == {"a", "b"}
    assert hub.subscribers("b") == [s1, s2]
    assert hub.subscriber_count("b") == 2
    assert hub.subscriber_count("nothing") == 0
    hub.unsubscribe(s1, "b", "not followed")
    assert hub.topics(s1) == {"a"}
    assert hub.subscribers("b") == [s2]
    hub.unsubscribe(s1)
    assert hub.topics(s1) == set()
    assert hub.topics() == {"b"}
    hub.unsubscribe(s1)  # not subscribed at all: nothing to do
    hub.close()
    assert hub.topics() == set()


def test_closed_connections_leave_their_topics(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), (_, s2), _ = pairs
    hub = Hub()
    hub.subscribe(s1, "room")
    hub.subscribe(s2, "room")
    closed_and_forgotten(s1, c1)
    assert hub.subscribers("room") == [s2]
    assert hub.topics(s1) == set()


def test_subscribing_a_closed_connection_undoes_itself(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), _, _ = pairs
    c1.close()
    assert s1.wait_closed(WAIT)
    hub = Hub()
    done = threading.Event()
    hub.subscribe(s1, "room")
    s1.add_close_callback(lambda _: done.set())
    assert done.wait(WAIT)
    assert hub.subscriber_count("room") == 0


def test_the_backend_follows_the_first_and_last_local_subscriber(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), (_, s2), _ = pairs
    backend = RecordingBackend()
    hub = Hub(backend)
    assert backend.deliver is not None
    hub.subscribe(s1, "room")
    hub.subscribe(s2, "room")
    hub.subscribe(s2, "other")
    assert backend.calls == [("subscribe", "room"), ("subscribe", "other")]
    hub.publish("room", "hi")
    assert backend.calls[-1] == ("publish", "room", "b'hi'", "True")
    hub.unsubscribe(s2)
    assert backend.calls[-1] == ("unsubscribe", "other")
    closed_and_forgotten(s1, c1)
    assert backend.calls[-1] == ("unsubscribe", "room")
    hub.close()
    assert backend.calls[-1] == ("close",)


def test_messages_from_the_backend_reach_local_subscribers(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), _, _ = pairs
    backend = RecordingBackend()
    hub = Hub(backend)
    hub.subscribe(s1, "room")
    deliver = backend.deliver
    assert callable(deliver)
    assert deliver("room", b"from afar", True) == 1
    assert deliver("elsewhere", b"nobody", True) == 0
    assert c1.recv(timeout=WAIT) == "from afar"


def test_bad_arguments(pairs: list[tuple[Connection, Connection]]) -> None:
    (_, s1), _, _ = pairs
    hub = Hub()
    with pytest.raises(TypeError, match="non-empty strings"):
        hub.subscribe(s1, "")
    with pytest.raises(TypeError, match="non-empty strings"):
        hub.subscribe(s1, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str or bytes"):
        hub.publish("room", 42)  # type: ignore[arg-type]


def test_publish_from_many_threads_keeps_each_publishers_order(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), _, _ = pairs
    hub = Hub()
    hub.subscribe(s1, "room")

    def publisher(name: str) -> None:
        for i in range(100):
            hub.publish("room", f"{name} {i}")

    threads = [threading.Thread(target=publisher, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    received = [c1.recv(timeout=WAIT) for _ in range(200)]
    for thread in threads:
        thread.join(WAIT)
    for name in "ab":
        mine = [m for m in received if isinstance(m, str) and m.startswith(name)]
        assert mine == [f"{name} {i}" for i in range(100)]


def test_room_switches_register_one_close_callback(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    """Leaving every topic and joining another, 10,000 times, adds one close callback."""
    hub = Hub()
    client, server = pairs[0]
    for i in range(10_000):
        hub.unsubscribe(server)
        hub.subscribe(server, f"room-{i % 7}")
    assert len(server._close_callbacks or ()) == 1
    assert hub.topics(server) == {"room-3"}
    closed_and_forgotten(server, client)
    assert hub.topics() == set()
    assert not hub._watched


def test_wait_for_subscribers_returns_once_enough_joined(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (c1, s1), (c2, s2), _ = pairs
    with Hub() as hub:
        assert not hub.wait_for_subscribers("room", timeout=0)
        joined = threading.Event()

        def join_later() -> None:
            joined.wait(WAIT)
            hub.subscribe(s1, "room")
            hub.subscribe(s2, "room")

        thread = threading.Thread(target=join_later)
        thread.start()
        joined.set()
        assert hub.wait_for_subscribers("room", count=2, timeout=WAIT)
        thread.join(WAIT)
        assert hub.publish("room", "hi") == 2
        assert c1.recv(timeout=WAIT) == "hi"
        assert c2.recv(timeout=WAIT) == "hi"
        assert not hub.wait_for_subscribers("room", count=3, timeout=0)
        with pytest.raises(TypeError):
            hub.wait_for_subscribers("")


def test_wait_for_subscribers_with_a_backend_that_cannot_wait(
    pairs: list[tuple[Connection, Connection]],
) -> None:
    (_, s1), _, _ = pairs
    with Hub(RecordingBackend()) as hub:  # no wait_subscribed(): the local count is enough
        hub.subscribe(s1, "room")
        assert hub.wait_for_subscribers("room", timeout=None)


def test_the_handler_race_that_wait_for_subscribers_closes() -> None:
    # connect() returns after the handshake, maybe before the handler subscribed.
    with Hub() as hub:

        def handler(ws: Connection) -> None:
            hub.subscribe(ws, "news")
            for _ in ws:
                pass

        with run_server(handler) as server, connect(server.uri) as client:
            assert hub.wait_for_subscribers("news")
            assert hub.publish("news", "fresh") == 1
            assert client.recv(timeout=WAIT) == "fresh"
