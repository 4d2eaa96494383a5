"""Fixtures shared by the whole suite: data directories and database backends."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# The suite starts hundreds of Python processes (`python -m mcred` commands, servers, the
# processes the crash tests kill) and its workers import the whole package. Where the
# environment sets PYTHONDONTWRITEBYTECODE (this development machine does), each of them
# compiled the package's modules again: about a quarter of a CLI test's time. The tests
# keep the compiled modules (in __pycache__, git-ignored) as Python does by default; what
# runs is the same source either way. Set before xdist starts its workers, which inherit it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

pytest_plugins = ["softhsm"]  # the softhsm_token fixture of the HSM tests

# Hypothesis draws new examples on every run, which is what a developer's runs are for: they
# keep exploring. CI is another matter: a run there decides whether a change lands, and an
# example nobody's change reached could turn it red (the lifecycle model failed for some
# seeds for a whole session while every CI run happened to pass). So .ci/run asks for the
# "ci" profile (HYPOTHESIS_PROFILE=ci): examples derived from each test's own source, the
# same on every run of the same code, so CI judges the change; a failure prints the blob
# that reproduces it. Elsewhere (no HYPOTHESIS_PROFILE) nothing changes.
from hypothesis import settings as _hypothesis_settings  # noqa: E402 - after the environment set-up above

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    _hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


def _cli_built_once_per_app() -> None:
    """typer's ``CliRunner.invoke`` builds the whole click command tree of the app it is
    given on every call (``typer.main.get_command``: every command's signature and type
    hints read again), about 0.25 s here, more than most commands take to run; the suite
    invokes the CLI in-process over a thousand times. ``mcred`` itself builds that tree once
    per process, so the tests build it once per app too and reuse it: the same click
    commands, parsed and run afresh on each invoke (click keeps a call's state in its own
    ``Context``, never on the command). An app whose commands or groups change after it was
    built is built again."""
    import typer.testing

    build = typer.testing._get_command
    built: dict[int, tuple[object, tuple[int, int, object], object]] = {}

    def shape(app) -> tuple[int, int, object]:  # noqa: ANN001 - a typer.Typer
        return len(app.registered_commands), len(app.registered_groups), app.registered_callback

    def get_command(app):  # noqa: ANN001, ANN202 - typer.Typer -> click.Command
        hit = built.get(id(app))
        if hit is None or hit[0] is not app or hit[1] != shape(app):
            hit = built[id(app)] = (app, shape(app), build(app))
        return hit[2]

    typer.testing._get_command = get_command


_cli_built_once_per_app()


def _model_fields_read_once_per_model() -> None:
    """FastAPI builds a fresh ``ModelField`` (a pydantic ``TypeAdapter`` each) for every field
    of every model each time an app's OpenAPI document is made, to find the nested models
    (``fastapi._compat.v2.get_flat_models_from_model`` calls ``get_model_fields``), though
    it keeps the same list per model class in ``get_cached_model_fields`` for its other
    uses. A service makes its document once; the tests make one for nearly every app they
    build (tests/documented.py holds every answer to it), and this walk was about 40% of
    that. Here the walk takes FastAPI's cached list: a model class's fields do not change,
    and the documents come out identical (compared byte for byte, issuer and reader apps).
    Left alone if FastAPI's internals are not the ones this was written against."""
    try:
        from fastapi._compat import v2
    except ImportError:
        return
    if not all(callable(getattr(v2, name, None)) for name in (
            "get_flat_models_from_model", "get_flat_models_from_fields", "get_cached_model_fields")):
        return
    import inspect

    if "get_model_fields(model)" not in inspect.getsource(v2.get_flat_models_from_model):
        return

    def get_flat_models_from_model(model, known_models=None):  # noqa: ANN001, ANN202 - as FastAPI's
        known_models = known_models or set()
        v2.get_flat_models_from_fields(v2.get_cached_model_fields(model), known_models=known_models)
        return known_models

    v2.get_flat_models_from_model = get_flat_models_from_model


_model_fields_read_once_per_model()


#: MCRED_TEST_REAL_MIGRATIONS=1: every test migrates the real way (a run after changing a revision)
_migrations_copied = {"on": os.environ.get("MCRED_TEST_REAL_MIGRATIONS", "") in ("", "0")}


def _sqlite_migrated_from_a_copy() -> None:
    """Every test that opens a new data directory migrates a new SQLite database from
    nothing: about 40 revisions, 45-50 ms each time, over a thousand times a run. A database
    the same code migrated is the same bytes whichever test asks, so each worker migrates one
    per target (``heads``, ``reader@head``) the real way, once, and copies it (SQLite's
    online backup, about 2 ms) into each new, empty database :func:`mcred.db.migrate` is given
    afterwards, then lets ``migrate`` itself check that it is there. Any database that holds a
    table already, any other backend, and any test marked ``real_migrations`` (one about
    migrating itself: a revision made to fail, the order they run in) migrates as before, as
    does every test with MCRED_TEST_REAL_MIGRATIONS=1. ``mcred`` commands run in a
    subprocess migrate the real way too."""
    import atexit
    import shutil
    import sqlite3
    import tempfile

    import sqlalchemy as sa

    import mcred.db

    real = mcred.db.migrate
    made: dict[str, str] = {}
    where: list[str] = []

    def template(target: str) -> str:
        if target not in made:
            if not where:
                where.append(tempfile.mkdtemp(prefix="mcred-migrated-"))
                atexit.register(shutil.rmtree, where[0], True)
            path = os.path.join(where[0], f"{len(made)}.sqlite3")
            engine = mcred.db.make_engine(f"sqlite:///{path}")
            try:
                real(engine, target)
            finally:
                engine.dispose()
            made[target] = path
        return made[target]

    def migrate(engine, target: str = "heads") -> None:  # noqa: ANN001 - an Engine
        database = engine.url.database
        if (not _migrations_copied["on"] or engine.dialect.name != "sqlite" or not database
                or database == ":memory:" or database.startswith("file:")):
            return real(engine, target)
        with engine.connect() as conn:
            if sa.inspect(conn).get_table_names():
                return real(engine, target)
        migrate.copies += 1
        source = sqlite3.connect(template(target))
        raw = engine.raw_connection()
        try:
            source.backup(raw.driver_connection)
        finally:
            raw.close()
            source.close()
        real(engine, target)  # finds it done: the copy is at the target

    migrate.real = real  # tests/test_migrated_copy.py compares the two
    migrate.copies = 0
    mcred.db.migrate = migrate


_sqlite_migrated_from_a_copy()


@pytest.fixture(autouse=True)
def _real_migrations_when_marked(request) -> Iterator[None]:
    if request.node.get_closest_marker("real_migrations") is None:
        yield
        return
    saved, _migrations_copied["on"] = _migrations_copied["on"], False
    try:
        yield
    finally:
        _migrations_copied["on"] = saved


def _shared() -> Path:
    """The shared directory (vectors, context): ``$MCRED_SHARED``, else the nearest
    ancestor's ``shared`` with vectors in it (a checkout in /work/main and a git worktree in
    /work/wt/<name> both find /work/shared)."""
    if os.environ.get("MCRED_SHARED"):
        return Path(os.environ["MCRED_SHARED"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "vectors").is_dir():
            return parent / "shared"
    return here.parents[2] / "shared"


SHARED = _shared()
VECTORS = SHARED / "vectors"

PG_URL = os.environ.get(
    "MCRED_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_state: dict[str, str | None] = {}


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers."""
    if "why" not in _pg_state:
        try:
            import sqlalchemy as sa

            engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
            _pg_state["why"] = None
        except Exception as exc:  # noqa: BLE001 - any failure means "not here"
            _pg_state["why"] = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
    return _pg_state["why"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh data directory, also exported as MCRED_HOME."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("MCRED_HOME", str(h))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    return h


@pytest.fixture
def every_answer_checked(monkeypatch) -> list[str]:
    """Every answer of every ``TestClient`` the test builds held to its app's OpenAPI
    document, refusals too (tests/documented.py ``check_every_test_client``)."""
    from documented import check_every_test_client

    return check_every_test_client(monkeypatch)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A database URL for each backend: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    why = postgres_unavailable()
    if why:
        pytest.skip(why)
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(db_url):
    """An engine on :func:`db_url`, every party's schema migrated (a module may define an
    ``engine`` of its own, which then takes precedence)."""
    from mcred.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@contextlib.contextmanager
def fsync_skipped() -> Iterator[None]:
    """``os.fsync`` as a no-op while it lasts: a module's SE images and key files need not
    reach the disk in a test (every module-scoped installation of the lifecycle tests uses it)."""
    saved = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = saved


def reveals(text: str, secret: str) -> bool:
    """Whether ``text`` (an answer, a job's view) carries ``secret`` as a value of its own:
    the secret with no letter or digit either side. A short numeric PIN also turns up inside
    timestamps and hex serials by chance ("...01.743218" holds 4321), which says nothing."""
    import re

    return re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", text) is not None


_PEOPLE = itertools.count(1)


def person(holder: Mapping, **changes) -> dict:
    """``holder`` (a holder file's record) as a person of their own: the same record at an
    address of its own (``-N`` added, N new in this process), with ``changes``. The registry
    takes a holder file's identity fields (names, kana, birth date, sex, address) for who the
    person is, and one person holds the smartphone credentials on one phone only: a test
    that provisions several phones for several people in one installation gives each
    provisioning a ``person(HOLDER)``; one that means the same person again (a handover, the
    refusal) uses ``HOLDER`` itself."""
    return {**holder, "address": f"{holder['address']}-{next(_PEOPLE)}", **changes}


def pytest_xdist_auto_num_workers(config) -> int:  # noqa: ANN001 - pytest's Config
    """``-n auto``: one worker more than the cores (up to ``--maxprocesses``). Many tests wait
    (a subprocess starting, a lease lapsing, a reader polling), and a core is idle while they
    do: on two cores, three workers ran the suite in 683 s where two took 765 s."""
    return (os.cpu_count() or 1) + 1


def fuzz_scale() -> int:
    """``MCRED_FUZZ_SCALE`` as a number (1 when unset), for a test that builds its own
    ``@given`` while it runs (tests/test_api_fuzz.py), out of the reach of the hook below."""
    text = os.environ.get("MCRED_FUZZ_SCALE", "").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"MCRED_FUZZ_SCALE={text!r}: a whole number of times the examples, 1 or more")
    return int(text)


def pytest_collection_modifyitems(config, items) -> None:
    """``MCRED_FUZZ_SCALE=N`` runs every property test with N times its examples and no
    deadline: a fuzz campaign over the same tests, off CI (whose runs stay bounded)."""
    scale = fuzz_scale()
    if scale == 1:
        return
    from hypothesis import settings

    seen: set[int] = set()
    for item in items:
        test = getattr(item, "obj", None)
        # A RuleBasedStateMachine collected as its ``TestCase`` (tests/test_reader_sessions_model.py):
        # its runTest reads the class's ``settings`` when it runs, and carries none of its own.
        machine = getattr(item, "cls", None)
        if getattr(test, "_hypothesis_state_machine_class", None) is not None and machine is not None:
            if id(machine) not in seen:
                seen.add(id(machine))
                current = machine.settings
                machine.settings = settings(current, max_examples=current.max_examples * scale, deadline=None)
            continue
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is None or id(test) in seen:
            continue
        seen.add(id(test))
        test._hypothesis_internal_use_settings = settings(
            current, max_examples=current.max_examples * scale, deadline=None
        )
