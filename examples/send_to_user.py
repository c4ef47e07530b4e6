"""Send to one user, who may have several connections (a phone and a laptop).

    python examples/send_to_user.py

A registry keyed by user id, guarded by a lock since handlers run in threads
of their own. The demo starts a server on a free port, connects Alice twice
and Bob once, sends a private message to Alice, then to everyone, and prints
what each connection got.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import syncws


class Users:
    """Which connections belong to which user. Callable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: defaultdict[str, set[syncws.Connection]] = defaultdict(set)

    def add(self, user: str, connection: syncws.Connection) -> None:
        with self._lock:
            self._connections[user].add(connection)
        # Forget the connection by itself when it closes.
        connection.add_close_callback(lambda closed: self.remove(user, closed))

    def remove(self, user: str, connection: syncws.Connection) -> None:
        with self._lock:
            self._connections[user].discard(connection)
            if not self._connections[user]:
                del self._connections[user]

    def send_to(self, user: str, message: str) -> int:
        """Send to every connection of ``user``; return how many got it."""
        with self._lock:
            connections = list(self._connections.get(user, ()))
        # broadcast() never blocks: call it while holding no lock all the same.
        return syncws.broadcast(connections, message)

    def online(self) -> list[str]:
        with self._lock:
            return sorted(self._connections)


def main() -> None:
    users = Users()
    joined = threading.Semaphore(0)

    def handler(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        # A real application authenticates here (a cookie, a token): see the docs.
        query = parse_qs(urlsplit(connection.request.path).query)
        user = query.get("user", ["anonymous"])[0]
        users.add(user, connection)
        joined.release()
        for _ in connection:  # keep the connection open until the client leaves
            pass

    with syncws.serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"ws://127.0.0.1:{server.port}/"
        clients = {
            "alice's phone": syncws.connect(base + "?user=alice"),
            "alice's laptop": syncws.connect(base + "?user=alice"),
            "bob's laptop": syncws.connect(base + "?user=bob"),
        }
        for _ in clients:
            joined.acquire(timeout=10)
        print("online:", ", ".join(users.online()))
        print("to alice:", users.send_to("alice", "psst, alice"), "connections")
        print("to everyone:", syncws.broadcast(server.connections, "hello, all"), "connections")
        for name, client in clients.items():
            received = []
            with client:
                while (message := client.recv(timeout=10)) != "hello, all":
                    received.append(message)
            print(f"{name} got: {[*received, message]}")
        server.shutdown()


if __name__ == "__main__":
    main()
