"""The data directory: every key, database and phone of one installation lives below it."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_home(explicit: Path | None = None) -> Path:
    """``explicit`` if given, else ``$MCRED_HOME``, else the platform's user data directory."""
    if explicit is not None:
        home = Path(explicit)
    elif os.environ.get("MCRED_HOME"):
        home = Path(os.environ["MCRED_HOME"])
    else:
        home = Path(platformdirs.user_data_dir("mcred"))
    home.mkdir(parents=True, exist_ok=True)
    return home
