"""gunicorn settings for the WSGI tests: the SIGTERM hook, and a long graceful timeout
so that a client that sees 1001 quickly can only owe it to the hook."""

from syncws.wsgi import gunicorn_post_worker_init as post_worker_init  # noqa: F401

graceful_timeout = 30
