"""The Kaggle API token, found where the official client looks: KAGGLE_USERNAME + KAGGLE_KEY, or
kaggle.json in KAGGLE_CONFIG_DIR, ~/.kaggle, or (Linux, without ~/.kaggle) ~/.config/kaggle."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

CREATE = "create a token at https://www.kaggle.com/settings (API > Create New Token)"


@dataclass(frozen=True)
class Token:
    ok: bool
    source: str  # "environment", a kaggle.json path, or "" when none was found
    problem: str = ""
    fix: str = ""


def token_file() -> Path:
    """Where the official client reads kaggle.json from (kaggle_api_extended's rule)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    home = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not home.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle" / "kaggle.json"
    return home / "kaggle.json"


def find_token() -> Token:
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if user and key:
        return Token(True, "environment")
    if user or key:
        missing = "KAGGLE_KEY" if user else "KAGGLE_USERNAME"
        return Token(False, "environment", f"{missing} is not set (the other one is)", f"export {missing}=...  # from kaggle.json")
    path = token_file()
    shown = str(path).replace(str(Path.home()), "~", 1)
    if not path.is_file():
        return Token(False, "", f"no Kaggle API token: {shown} is missing", f"{CREATE} and save it as {shown}")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return Token(False, str(path), f"{shown} is not readable JSON ({type(e).__name__})", f"{CREATE} and save it as {shown}")
    if not isinstance(values, dict) or not values.get("username") or not values.get("key"):
        return Token(False, str(path), f"{shown} lacks username or key", f"{CREATE} and save it as {shown}")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        mode = oct(stat.S_IMODE(path.stat().st_mode))[2:]
        return Token(False, str(path), f"{shown} is readable by other users (mode {mode})", f"chmod 600 {shown}")
    return Token(True, str(path))
