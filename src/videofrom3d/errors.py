"""The error types a user sees as one line (``videofrom3d: error: ...``) instead of a traceback."""

from __future__ import annotations


class VideoFrom3DError(Exception):
    """Base of every error caused by input the user can fix (a job key, a file, a missing weight)."""


class VideoFrom3DWarning(UserWarning):
    """Something the user may want to fix that does not stop the run (the CLI prints it as one line)."""


def user_errors() -> tuple[type[BaseException], ...]:
    return (VideoFrom3DError, FileNotFoundError)


USER_ERRORS = user_errors()
