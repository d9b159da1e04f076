"""Shared command-line plumbing: a user's mistake becomes one line on stderr and exit status 2."""
from __future__ import annotations

import functools
import sys

from search_spaces import ArchError, UnknownSpaceError


class UserError(Exception):
    """A mistake in what the user asked for; its message says what is wrong and what is allowed."""


class RunFailed(Exception):
    """A run that cannot go on (e.g. a diverged loss); exit status 1 with one line, no traceback."""


USER_ERRORS = (UserError, ArchError, UnknownSpaceError)


def run_cli(main):
    """Decorate a `main(argv) -> int` so user errors exit 2 with one line and no traceback."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except RunFailed as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
