"""``python -m benchmarks NAME [ARGS...]`` -> ``benchmarks.NAME.main(ARGS)``; without a name,
the list of benchmarks (exit 0)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

_HERE = Path(__file__).parent


def _has_main(name: str) -> bool:
    """A benchmark is a module of this package with a top-level ``main``; the others (bare,
    scratch, timing) are helpers the benchmarks share. Read from the source, so that listing
    imports none of them."""
    try:
        tree = ast.parse((_HERE / f"{name}.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def _available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(_HERE)])
                  if not m.name.startswith("_") and not m.ispkg and _has_main(m.name))


def _usage() -> str:
    return ("usage: python -m benchmarks NAME [ARGS...]  (python -m benchmarks NAME --help: its options)\n"
            "benchmarks: " + ", ".join(_available()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] not in _available():
        print(f"error: no benchmark {argv[0]!r}\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    sys.argv = [f"benchmarks {argv[0]}", *argv[1:]]
    rc = module.main()
    return rc if isinstance(rc, int) else 0  # some return their figures (a dict), not a status


if __name__ == "__main__":
    sys.exit(main())
