"""The optional C accelerators; everything else is in pyproject.toml.

``_speedups``: masking and whole frames for the protocol core. ``_turn``:
the read turn's wait (POSIX). ``optional=True``: where no compiler is
available (or, for ``_turn``, no poll.h) the build goes on without them,
and syncws uses its pure-Python code.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("syncws.protocol._speedups", ["syncws/protocol/_speedups.c"], optional=True),
        Extension("syncws.threaded.runtime._turn", ["syncws/threaded/runtime/_turn.c"], optional=True),
    ]
)
