"""What makes a command or a server unable to start, said in one line: ``error: ...`` on
standard error and exit status 2, never a traceback. ``mcred`` (mcred.cli.main.run) and the
uvicorn factories (``uvicorn --factory mcred.service:app_from_env``, which ``mcred serve
--workers N`` and a deployment's own uvicorn call) share it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

#: the errors :func:`unusable_exits` names, by module and class: looked up when one is
#: raised, among the modules loaded by then (an exception's class is loaded before it can be
#: raised), so that a command that never touches the database does not import its stack
#: (SQLAlchemy, Alembic: most of a bare `mcred --help`'s start) to be ready for its errors
_NAMED = (("wallet_sim.se.errors", "SeError"), ("mcred.context", "ConfigError"), ("mcred.db", "SchemaError"),
          ("mcred.db", "DatabaseUnavailable"))
_KEYSTORE = ("issuer.keystore", "KeyStoreError")
_MASTER_KEY = ("tsm.errors", "MasterKeyError")


def _loaded(module: str, name: str) -> type[BaseException] | None:
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None


def _is(exc: BaseException, *where: tuple[str, str]) -> bool:
    return any((cls := _loaded(*w)) is not None and isinstance(exc, cls) for w in where)


@contextlib.contextmanager
def unusable_exits(*also: type[Exception], as_json: Callable[[str], str] | None = None) -> Iterator[None]:
    """Turn the errors that say the installation or its setting cannot work into
    ``error: ...`` and ``SystemExit(2)``: a phone's unreadable SE or record, a setting in
    the environment, a half-built database, the issuer's key store, the TSM master key, a
    file that could not be read or written, and ``also`` (a caller's own settings errors).
    Anything else goes on as it is. ``as_json`` (a command run with ``--json``): the message
    is said as the JSON document it returns, on stdout instead."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, also) or _is(exc, *_NAMED):  # a phone's files, a setting, the database: named
            _exit(str(exc), as_json)
        if _is(exc, _KEYSTORE):  # the issuer's keys cannot be reached (HSM, passphrase): say so
            _exit(f"issuer key store: {exc}", as_json)
        if _is(exc, _MASTER_KEY):  # the TSM master key (file, HSM) cannot be reached: say so
            _exit(f"TSM master key: {exc}", as_json)
        if isinstance(exc, OSError):  # a file that could not be read or written (the last
            # resort: the options that name files to write are checked before the work,
            # mcred.cli.state.out_path)
            where = f"{exc.filename}: " if exc.filename else ""
            _exit(f"{where}{exc.strerror or exc}", as_json)
        raise


def _exit(message: str, as_json: Callable[[str], str] | None = None) -> NoReturn:
    if as_json is not None:
        print(as_json(message), flush=True)
    else:
        print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None
