"""Questions about user-given local paths that answer "no such path" for a path the OS
cannot even hold (a name over its length limit, a NUL byte), where ``pathlib`` raises:
such a path is a user's typo, and gets the same clear "not found" error as any other."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _mode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def exists(path: str | Path) -> bool:
    return _mode(path) is not None


def is_dir(path: str | Path) -> bool:
    mode = _mode(path)
    return mode is not None and stat.S_ISDIR(mode)


def is_file(path: str | Path) -> bool:
    mode = _mode(path)
    return mode is not None and stat.S_ISREG(mode)
