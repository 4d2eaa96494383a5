"""The data directory: every key, database and phone of one installation lives below it.

It is its owner's alone: made 0700 whatever the umask (a group or world that could enter it
would read the database, with every holder's personal data, and could rename the key
directories for its own). :func:`private_dir` and :func:`write_private` make the directories
and files below it, and the files the CLI writes that carry keys or personal data, the same
way: owner-only from creation, never widened afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

#: Mode of a directory, and of a file, readable by its owner only.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def data_home(explicit: Path | None = None) -> Path:
    """``explicit`` if given, else ``$MCRED_HOME``, else the platform's user data directory;
    created 0700 if missing (an existing directory keeps its mode: `mcred doctor` reports one
    that others may enter)."""
    if explicit is not None:
        home = Path(explicit)
    elif os.environ.get("MCRED_HOME"):
        home = Path(os.environ["MCRED_HOME"])
    else:
        home = Path(platformdirs.user_data_dir("mcred"))
    return private_dir(home)


def private_dir(path: Path) -> Path:
    """``path`` as a directory, made 0700 if missing (its missing parents with the umask's
    mode, as ``mkdir -p`` makes them); returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only: a new file is created 0600 (the
    umask can only narrow that), an existing one is emptied and set to 0600 before a byte of
    ``data`` is in it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, PRIVATE_FILE)
        f.write(data)
