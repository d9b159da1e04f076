"""The two ways a command stops early: the user asked for something wrong (exit 2), or the run cannot go on (exit 1)."""
from __future__ import annotations

from search_spaces import ArchError, SpaceFileError, UnknownSpaceError


class UserError(Exception):
    """A mistake in what the user asked for; its message says what is wrong and what is allowed."""


class RunFailed(Exception):
    """A run that cannot go on (e.g. a diverged loss); exit status 1 with one line, no traceback."""


USER_ERRORS = (UserError, ArchError, UnknownSpaceError, SpaceFileError)
