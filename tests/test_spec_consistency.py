"""The specs against the code: what a user builds on must name what exists."""

from __future__ import annotations

import re
from pathlib import Path

from mcred.context import Context
from mcred.service import create_app

SPECS = Path(__file__).resolve().parents[1] / "specs"
_METHOD = r"GET|HEAD|POST|PUT|PATCH|DELETE"


def _template(path: str) -> re.Pattern[str]:
    """A served path (`/phones/{phone_id}`) as a pattern a spec's path must match."""
    return re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part)
                              for part in re.split(r"(\{[^}]*\})", path)) + "$")


def _route_cells(text: str) -> list[str]:
    """The first cell of each row of specs/api.md's "Routes" table."""
    section = text.split("\n## Routes", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `")]


def test_every_operation_of_the_issuer_service_is_in_the_api_spec_and_no_other(home: Path):
    """specs/api.md's route table missed the reader's BLE and user-authentication routes
    that `mcred serve` mounts: each operation of the service's OpenAPI document must be in
    a row of the table (`METHOD /path`, its parameters named anyhow, or a public prefix
    such as `/crl/...`), and each `METHOD /path` a row names must be an operation."""
    doc = create_app(Context.open(home), job_workers=1).openapi()
    served = [(m.upper(), p, _template(p)) for p, ops in doc["paths"].items() for m in ops]
    named, prefixes = [], []
    for cell in _route_cells((SPECS / "api.md").read_text(encoding="utf-8")):
        for m in re.finditer(rf"`(?:({_METHOD})`/`)?(?:({_METHOD}) )?(/[^`]*)`", cell):
            path = m.group(3).split("?")[0]
            methods = [x for x in m.groups()[:2] if x]
            if not methods:  # a public family: `/ocsp`, `/crl/...`
                prefixes.append(re.sub(r"\{[^}]*\}", "{}", path.removesuffix("...")))
            named += [(method, path) for method in methods]
    assert len(named) > 50
    missing = [f"{m} {p}" for m, p, pattern in served
               if not any(m == nm and pattern.match(np) for nm, np in named)
               and not any(q == x or (x.endswith("/") and q.startswith(x)) or q.startswith(x + "/")
                           for q in [re.sub(r"\{[^}]*\}", "{}", p)] for x in prefixes)]
    assert not missing, missing
    stale = [f"{nm} {np}" for nm, np in named if not any(m == nm and pattern.match(np) for m, _, pattern in served)]
    assert not stale, stale


_CODE = [p for pkg in ("issuer", "mcred", "reader", "tsm", "wallet_sim", "protocols")
         for p in sorted((SPECS.parent / pkg).rglob("*.py"))]
_SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"


def _emitted_problem_types() -> dict[str, set[int]]:
    """Every problem type the code can answer, slug -> its statuses (empty where only a
    description names it): the :class:`ProblemType` constants of issuer.api.problems and
    mcred.api_routes, the bare statuses issuer.api.problems.for_status names, and each place
    a ``type`` is built by hand (issuer.api.problem, the GP SERAM agent's and relay's, the
    reader's OAuth errors, the probes'), found in the source."""
    from issuer.api import problems
    from mcred import api_routes

    found: dict[str, set[int]] = {}

    def add(slug: str, status: int | None = None) -> None:
        found.setdefault(slug, set()).update([status] if status else [])

    for module in (problems, api_routes):
        for value in vars(module).values():
            if isinstance(value, problems.ProblemType):
                add(value.slug, value.status)
    for kind in problems._BY_STATUS.values():
        add(kind.slug, kind.status)
    for path in _CODE:
        text = path.read_text(encoding="utf-8")
        for slug in re.findall(rf"/problems/({_SLUG})(?![-/\w])", text):  # built or named in a description
            add(slug)
        for status, slug in re.findall(rf"\bproblem\((\d{{3}}), \"/problems/({_SLUG})\"", text):
            add(slug, int(status))
        for status, slug in re.findall(rf"\b_?problem\((\d{{3}}), \"({_SLUG})\"", text):  # tsm.seram_http
            add(slug, int(status))
        for status, error in re.findall(r"\b_oauth_error\((\d{3}), \"([a-z_]+)\"", text):
            add("oauth-" + error.replace("_", "-"), int(status))
        for slug, status in re.findall(rf"\"type\": \"/problems/({_SLUG})\".{{0,80}}\"status\": (\d{{3}})", text):
            add(slug, int(status))
        for status in re.findall(r"\bHTTPException\((\d{3})\b", text):  # answered by problems.for_status
            kind = problems.for_status(int(status))
            add(kind.slug, kind.status)
    return found


def _problem_rows(text: str) -> dict[str, set[int]]:
    """specs/api.md's problem-type table: slug -> the statuses its row gives (one for every
    type of the row, or one per type, `409/400/409`; `400 or 404` for a type of either)."""
    section = text.split("\n## Errors", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[int]] = {}
    for line in section.splitlines():
        if not line.startswith("| `/problems/"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        slugs = [s.removeprefix("/problems/") for s in re.findall(r"`([^`]+)`", cells[0])]
        statuses = [{int(s) for s in each.split(" or ")} for each in cells[1].split("/")]
        assert len(statuses) in (1, len(slugs)), line
        for i, slug in enumerate(slugs):
            assert slug not in rows, f"{slug}: two rows"
            rows[slug] = statuses[i if len(statuses) > 1 else 0]
    return rows


def test_every_problem_type_the_code_answers_is_in_the_api_spec_and_no_other():
    """specs/api.md's table of problem types lacked `not-ready`, `too-large`,
    `provisioning-refused`, `tsm-master-key`, `configuration`, the GP SERAM agent's and the
    reader's OAuth errors, all answered: each type the code can answer has a row with its
    status, and each row is a type the code answers."""
    emitted = _emitted_problem_types()
    rows = _problem_rows((SPECS / "api.md").read_text(encoding="utf-8"))
    assert len(emitted) > 40
    missing = sorted(set(emitted) - set(rows))
    assert not missing, missing
    stale = sorted(set(rows) - set(emitted))
    assert not stale, stale
    wrong = {slug: (sorted(emitted[slug]), sorted(rows[slug])) for slug in emitted
             if emitted[slug] and not emitted[slug] <= rows[slug]}
    assert not wrong, wrong


def test_no_route_answers_a_generic_problem_type():
    """The status lists' 404 was `about:blank` and the reader's NFC 503 `/problems/http-503`
    (a bare HTTPException of a status issuer.api.problems.for_status has no type for), where
    every other refusal has a type of its own: no code builds `about:blank`, and each bare
    HTTPException a route raises has a status with a type."""
    from issuer.api import problems

    generic = []
    for path in _CODE:
        text = path.read_text(encoding="utf-8")
        generic += [f"{path.name}: about:blank" for _ in re.findall(r"about:blank", text)]
        generic += [f"{path.name}: HTTPException({s})" for s in re.findall(r"\bHTTPException\((\d{3})\b", text)
                    if problems.for_status(int(s)).slug.startswith("http-")]
        generic += [f"{path.name}: {m}" for m in re.findall(r"/problems/http-\d{3}", text)]
    assert not generic, generic
