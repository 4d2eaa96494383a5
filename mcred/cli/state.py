"""Options shared by every command (set by the top-level callback), and the installation's
context opened on use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcred.context import Context


@dataclass
class GlobalOptions:
    trace: bool = False


OPTIONS = GlobalOptions()


def open_context() -> Context:
    """The installation's context, imported when a command needs it: the database stack
    (SQLAlchemy, Alembic) is not loaded for the commands that never touch it."""
    from mcred.context import Context

    return Context.open()
