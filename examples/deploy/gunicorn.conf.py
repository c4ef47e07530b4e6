"""gunicorn settings for a WSGI or Flask application with WebSocket routes (syncws.wsgi).

    gunicorn -c gunicorn.conf.py flask_app:app
    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -c gunicorn.conf.py flask_app:app

(gunicorn also reads ./gunicorn.conf.py by itself when started in its folder.)
"""

import os

# On SIGTERM (a restart, a deploy), close WebSockets with 1001 at once, so that
# clients reconnect to the next worker instead of waiting out graceful_timeout.
from syncws.wsgi import gunicorn_post_worker_init as post_worker_init  # noqa: F401

# Threads serve HTTP requests side by side; a WebSocket gives its thread back
# after the 101 (syncws runs it in a thread of its own), so this bounds the
# HTTP requests in flight, not the WebSockets.
worker_class = "gthread"
threads = 100
# Processes. Each worker holds WebSockets of its own, and a broadcast from a
# view reaches those of its own worker only, unless the application sends it
# through Redis: syncws.Hub(syncws.RedisBackend(url)), as the Flask example
# does when REDIS_URL is set. So: one worker per core with Redis, one without.
workers = (os.cpu_count() or 1) if os.environ.get("REDIS_URL") else 1
# nginx in front, on the same machine (see the deployment guide).
bind = "127.0.0.1:8000"
graceful_timeout = 30
