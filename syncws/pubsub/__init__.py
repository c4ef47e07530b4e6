"""Publish/subscribe for WebSocket connections: topics in one process, or many with Redis.

``Hub`` keeps which connection follows which topic and delivers with the
non-blocking ``broadcast()``. Give it a ``RedisBackend`` to reach the
subscribers of every process that shares the Redis server.
"""

from .hub import Backend, Hub
from .redis_backend import RedisBackend

__all__ = ["Backend", "Hub", "RedisBackend"]
