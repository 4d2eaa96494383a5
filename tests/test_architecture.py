"""The shape of ../shared/ARCHITECTURE.md, checked on the source: dependencies point one way.

- ``protocols`` depends on nothing of ours, and does no I/O: no database, HTTP or server
  library, no files through the parties' stores.
- the parties (``issuer``, ``tsm``, ``wallet_sim``, ``reader``) never import each other or
  the composition root; they meet only through bytes.
- the shared layers below the parties (``hsm``, ``dbtypes``, ``blelink``) import no party
  (``blelink`` carries ``protocols.mdoc.ble``'s framing, nothing else of ours).
- only ``mcred`` (and the benchmarks) wire parties together.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTIES = {"issuer", "tsm", "wallet_sim", "reader"}
SHARED = {"hsm", "dbtypes", "blelink"}
OURS = PARTIES | SHARED | {"protocols", "mcred", "benchmarks"}
#: What each package may import of ours (besides itself).
ALLOWED = {
    "protocols": set(),
    "hsm": set(),
    "dbtypes": set(),
    "blelink": {"protocols"},  # the BLE link carries protocols.mdoc.ble's framing
    **{party: {"protocols"} | SHARED for party in PARTIES},
}
#: Libraries that mean I/O or a server; protocols stays pure.
IO_LIBRARIES = {"sqlalchemy", "alembic", "httpx", "fastapi", "starlette", "uvicorn", "requests",
                "psycopg", "pkcs11", "typer", "rich", "socket", "subprocess", "urllib", "bumble"}
#: Modules of those libraries that only compute (URL strings parsed and built): allowed.
PURE_MODULES = {"urllib.parse"}


def _imports(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(ROOT).parts[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts
                  or p.name == "env.py")


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_one_way(package):
    wrong = {}
    for path in _modules(package):
        bad = (_imports(path) & OURS) - ALLOWED[package] - {package}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"{package} imports what ARCHITECTURE.md keeps out of it: {wrong}"


def _absolute_imports(path: Path) -> set[str]:
    """The full dotted names of the modules ``path`` imports absolutely."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


def test_protocols_do_no_io():
    wrong = {}
    for path in _modules("protocols"):
        bad = {name.split(".")[0] for name in _absolute_imports(path) - PURE_MODULES} & IO_LIBRARIES
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"protocols/ is pure (no I/O): {wrong}"


def test_the_check_sees_every_package():
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk - {"tests"} <= OURS, f"a new top-level package needs its place here: {on_disk - OURS}"
