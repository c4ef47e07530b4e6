"""The optional C accelerator for masking; everything else is in pyproject.toml.

``optional=True``: where no compiler is available the build goes on without
it, and syncws uses its pure-Python masking.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("syncws.protocol._speedups", ["syncws/protocol/_speedups.c"], optional=True)
    ]
)
