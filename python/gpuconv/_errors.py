"""The exceptions gpuconv raises, each with the library's one-line message."""

from __future__ import annotations

__all__ = ["ArgumentError", "EngineError", "Error", "InputError", "LimitError"]


class Error(Exception):
    """Anything gpuconv refuses or fails at; catch this to catch them all."""


class ArgumentError(Error, ValueError):
    """A bad argument: a wrong dtype or shape, an unknown kernel, a kernel with NaN weights, an
    image smaller than 3x3, a threshold no pixel can reach. Also a ``ValueError``."""


class InputError(Error):
    """An image file that cannot be read: corrupt, truncated, or of a kind gpuconv does not read."""


class LimitError(Error):
    """An image over a limit: more pixels or memory than allowed, or too large for the GPU."""


class EngineError(Error):
    """The engine itself failed: no GPU when one was asked for, or a GPU error."""
