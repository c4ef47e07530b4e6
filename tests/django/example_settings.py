"""examples/django's settings, plus a response header naming the worker (gunicorn tests)."""

import os

from chat.settings import *  # noqa: F403
from chat.settings import SYNCWS_OPTIONS

# Loaded in each worker (no --preload): the 101 says which process took the WebSocket.
SYNCWS_OPTIONS = {**SYNCWS_OPTIONS, "additional_headers": {"X-Worker": str(os.getpid())}}
