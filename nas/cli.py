"""Shared command-line plumbing: a user's mistake becomes one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import functools
import sys

from nas.errors import USER_ERRORS, RunFailed, UserError


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


MAX_SEED = 2**32 - 1  # what numpy, torch and Optuna take as a seed


def bounded_int(flag: str, lowest: int, highest: int):
    """An argparse type: an integer from `lowest` to `highest`, else one line naming the flag and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lowest <= value <= highest:
            raise UserError(f"{flag} must be an integer from {lowest} to {highest:,}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def seed_type(flag: str = "--seed"):
    return bounded_int(flag, 0, MAX_SEED)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and values that may start with '-' (`--flops -1G` is
    read as the value -1G, so the limit's own check can say what is wrong with it)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --flop is not --flops: a mistyped flag is an error, not a guess
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")

    def parse_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        known = set(self._option_string_actions)
        joined, k = [], 0
        while k < len(args):
            token = args[k]
            action = self._option_string_actions.get(token)
            if action is not None and action.nargs is None and k + 1 < len(args) and args[k + 1].startswith("-") \
                    and args[k + 1] not in known and action.option_strings[0].startswith("--"):
                joined.append(f"{token}={args[k + 1]}")
                k += 2
                continue
            joined.append(token)
            k += 1
        return super().parse_args(joined, namespace)
