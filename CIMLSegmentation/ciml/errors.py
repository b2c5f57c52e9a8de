"""Errors that reach the user as one clear message (never a traceback)."""

from __future__ import annotations


class CIMLError(Exception):
    """Base class of every error the command line reports as a plain message and exit code."""

    exit_code = 2


class CardError(CIMLError, ValueError):
    """A model card is invalid; the message names the offending field."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"model card: {field}: {problem}")


class BundleError(CIMLError):
    """A model bundle is missing, corrupted, tampered with, or does not fit its card."""


def user_error(exc: BaseException | None) -> CIMLError | None:
    """The :class:`CIMLError` that ``exc`` is or was raised from, if any.

    MONAI re-raises an error inside a transform as ``RuntimeError("applying transform ...")``
    from the original, so a bad label map found while caching cases arrives wrapped.
    """
    while exc is not None:
        if isinstance(exc, CIMLError):
            return exc
        exc = exc.__cause__
    return None
