"""A scratch data directory for a benchmark run: SQLite in a fresh temporary directory,
whatever ``MCRED_DATABASE_URL`` the shell has, so that figures compare run to run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def scratch_context(prefix: str):  # noqa: ANN201 - (Path, mcred.context.Context)
    """A fresh temporary directory and the mcred context of its ``home`` (``MCRED_HOME``
    pointed there, no database URL): what to ``shutil.rmtree`` afterwards, and the context."""
    from mcred.context import Context

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MCRED_HOME"] = str(tmp / "home")
    os.environ.pop("MCRED_DATABASE_URL", None)
    return tmp, Context.open(tmp / "home")
