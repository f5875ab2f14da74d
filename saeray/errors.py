"""User-facing errors.

A ``SaerayError`` is a mistake the user can fix (unknown id, wrong shapes, bad config,
unreadable file). Its message names the problem and the fix. The CLI prints it as one
line and exits non-zero; the HTTP API maps it to a 4xx. Anything else is a bug.
"""


class SaerayError(Exception):
    """A user mistake with a clear message; never a half-written result."""


class NotFoundError(SaerayError):
    """An id or path that does not exist (HTTP 404)."""


class ConflictError(SaerayError):
    """A request that conflicts with the current state (HTTP 409)."""


class InvalidInputError(SaerayError):
    """Input that is malformed or inconsistent (HTTP 422)."""
