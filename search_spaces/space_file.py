"""A user's own space: a Python file that builds a SearchSpace and calls register_space.

It is the only user Python the project runs, and only when the user names it on the command line of
the command being run. A run records the file's path and sha256; a command that later reuses the run
is given the file again and refuses one whose hash differs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

_LOADED: dict[str, str] = {}  # resolved path -> sha256 of the text that ran


class SpaceFileError(ValueError):
    """A --space-file that cannot be used; the message names the file and what is wrong."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_space_file(path: str | Path | None, expected_sha256: str | None = None) -> str | None:
    """Run the space file at `path` once per process and return its sha256 (None when no file is given).

    With `expected_sha256`, a file whose content differs is refused before it runs.
    """
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise SpaceFileError(f"--space-file {path}: file does not exist")
    key = str(p.resolve())
    digest = file_sha256(p)
    if expected_sha256 is not None and digest != expected_sha256:
        raise SpaceFileError(f"--space-file {path}: its sha256 {digest[:12]}... differs from the {expected_sha256[:12]}... "
                             "the run recorded; give the file the run was made with")
    if key in _LOADED:
        return _LOADED[key]
    name = f"user_space_{p.stem}"
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise SpaceFileError(f"--space-file {path}: Python syntax error at line {e.lineno}: {e.msg}") from None
    except Exception as e:  # the user's code failed: say where, in one line
        sys.modules.pop(name, None)
        raise SpaceFileError(f"--space-file {path}: raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    _LOADED[key] = digest
    return digest
