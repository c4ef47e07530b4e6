"""syncws: WebSocket for Python with threads, no async and no await."""

from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exceptions_all

__all__ = [*_exceptions_all]
__version__ = "0.1.0.dev0"
