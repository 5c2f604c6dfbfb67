"""Data sets on disk (being split into a package; see the next commit)."""

from .images import *  # noqa: F403
