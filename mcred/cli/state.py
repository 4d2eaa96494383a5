"""Options shared by every command (set by the top-level callback)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GlobalOptions:
    trace: bool = False


OPTIONS = GlobalOptions()
