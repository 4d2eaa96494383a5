"""What makes a command or a server unable to start, said in one line: ``error: ...`` on
standard error and exit status 2, never a traceback. ``mcred`` (mcred.cli.main.run) and the
uvicorn factories (``uvicorn --factory mcred.service:app_from_env``, which ``mcred serve
--workers N`` and a deployment's own uvicorn call) share it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn


@contextlib.contextmanager
def unusable_exits(*also: type[Exception]) -> Iterator[None]:
    """Turn the errors that say the installation or its setting cannot work into
    ``error: ...`` and ``SystemExit(2)``: a phone's unreadable SE or record, a setting in
    the environment, a half-built database, the issuer's key store, the TSM master key, a
    file that could not be read or written, and ``also`` (a caller's own settings errors).
    Anything else goes on as it is."""
    from issuer.keystore import KeyStoreError
    from mcred.context import ConfigError
    from mcred.db import SchemaError
    from tsm.errors import MasterKeyError
    from wallet_sim.se.errors import SeError

    try:
        yield
    except (SeError, ConfigError, SchemaError, *also) as exc:  # a phone's files, a setting, the database: named
        _exit(str(exc))
    except KeyStoreError as exc:  # the issuer's keys cannot be reached (HSM, passphrase): say so
        _exit(f"issuer key store: {exc}")
    except MasterKeyError as exc:  # the TSM master key (file, HSM) cannot be reached: say so
        _exit(f"TSM master key: {exc}")
    except OSError as exc:  # a file that could not be read or written (the last resort: the
        # options that name files to write are checked before the work, mcred.cli.state.out_path)
        where = f"{exc.filename}: " if exc.filename else ""
        _exit(f"{where}{exc.strerror or exc}")


def _exit(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None
