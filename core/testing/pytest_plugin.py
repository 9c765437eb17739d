"""The test kit's pytest plugin (``pytest11`` entry point): fixtures for plugin authors.

One import line per module of the kit that defines fixtures.
"""

from .hosts import *  # noqa
