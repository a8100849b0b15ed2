"""Kept importable for code written against the replaced library's README
(``from mindtrace.registry.core.exceptions import ...``); the hierarchy lives
in :mod:`registry.exceptions`, at the bottom of the package."""

from registry.exceptions import *  # noqa: F403
from registry.exceptions import __all__ as __all__
