"""``python -m benchmarks NAME [ARGS...]`` -> ``benchmarks.NAME.main(ARGS)``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in _available():
        print("usage: python -m benchmarks NAME [ARGS...]\navailable: " + ", ".join(_available()))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    sys.argv = [f"benchmarks {argv[0]}", *argv[1:]]
    rc = module.main()
    return rc if isinstance(rc, int) else 0  # some return their figures (a dict), not a status


if __name__ == "__main__":
    sys.exit(main())
