"""One PKCS#11 token session per process, shared by every party that keeps keys in the HSM
(specs/issuer-keys.md "PKCS#11"): the issuer's key store (``issuer.hsm``) and the TSM's
master key (``tsm.hsm``). Neither party may import the other, and PKCS#11 logs in per
process, not per session, so the session they share lives here, below both.

:func:`open_token` opens (and logs in to) a token once per (module, token label) and hands
every later caller the same :class:`Token`; its ``lock`` serialises the session, which is
not thread-safe. :func:`token_settings` reads the installation's settings
(``MCRED_PKCS11_MODULE``, ``MCRED_PKCS11_TOKEN``, ``MCRED_PKCS11_PIN`` or
``MCRED_PKCS11_PIN_FILE``). Failures are :class:`TokenError`; each party re-raises them as
its own error type (``issuer.hsm.HsmError``, ``tsm.errors.MasterKeyError``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SOFTHSM2 = "/usr/lib/softhsm/libsofthsm2.so"


class TokenError(Exception):
    """The token refused, or is not there (or the settings to reach it are incomplete)."""


@contextmanager
def raised_as(error: type[Exception]) -> Iterator[None]:
    """A :class:`TokenError` inside the block re-raised as the party's own ``error`` type
    (``issuer.hsm.HsmError``, ``tsm.errors.MasterKeyError``), message unchanged."""
    try:
        yield
    except TokenError as exc:
        raise error(str(exc)) from exc


def pkcs11_module(setting: str = "MCRED_KEYSTORE=pkcs11"):
    """python-pkcs11, or a :class:`TokenError` saying which setting needs it."""
    try:
        import pkcs11
    except ImportError as exc:  # pragma: no cover - python-pkcs11 is a dependency
        raise TokenError(f"{setting} needs python-pkcs11: pip install 'mcred[hsm]'") from exc
    return pkcs11


def token_settings(env: Mapping[str, str] | None = None,
                   setting: str = "MCRED_KEYSTORE=pkcs11") -> tuple[str, str, str]:
    """(module, token label, user PIN) from the environment; ``setting`` names the setting
    that asked for the token, in the error when the PIN is missing or unreadable."""
    env = os.environ if env is None else env
    module = env.get("MCRED_PKCS11_MODULE") or SOFTHSM2
    token = env.get("MCRED_PKCS11_TOKEN") or "mcred"
    pin = env.get("MCRED_PKCS11_PIN")
    if pin is None and env.get("MCRED_PKCS11_PIN_FILE"):
        path = Path(env["MCRED_PKCS11_PIN_FILE"])
        try:
            pin = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"{setting}: MCRED_PKCS11_PIN_FILE {path} is unreadable "
                             f"({type(exc).__name__})") from None
    if not pin:
        raise TokenError(f"{setting} needs the token's user PIN: MCRED_PKCS11_PIN "
                         "or MCRED_PKCS11_PIN_FILE")
    return module, token, pin


class Token:
    """One logged-in read-write session on the token, used under ``lock``."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        pkcs11 = pkcs11_module()
        self.module, self.label = module, token_label
        self.lock = threading.RLock()
        self.pin_digest = hashlib.sha256(pin.encode()).digest()
        try:
            lib = pkcs11.lib(module)
            token = lib.get_token(token_label=token_label)
            self.session = token.open(user_pin=pin, rw=True)
        except pkcs11.exceptions.PKCS11Error as exc:
            raise TokenError(f"PKCS#11 token {token_label!r} in {module}: {type(exc).__name__} {exc}") from exc
        except (OSError, RuntimeError) as exc:
            raise TokenError(f"PKCS#11 module {module}: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            try:
                self.session.close()
            except Exception:  # noqa: BLE001, S110 - closing a session the token already dropped
                pass


_OPEN: dict[tuple[str, str], Token] = {}
_OPEN_LOCK = threading.Lock()


def open_token(module: str, token_label: str, pin: str) -> Token:
    """The process's session on the token, opened (and logged in) on first use."""
    with _OPEN_LOCK:
        token = _OPEN.get((module, token_label))
        if token is not None:
            if not hmac.compare_digest(token.pin_digest, hashlib.sha256(pin.encode()).digest()):
                raise TokenError(f"PKCS#11 token {token_label!r} is open in this process with another PIN")
            return token
        token = Token(module, token_label, pin)
        _OPEN[(module, token_label)] = token
        return token


def close_all() -> None:
    """Close this process's token sessions (the token logs out with the last one); the next
    store opens and logs in again. For shutdown, and for tests that swap tokens."""
    with _OPEN_LOCK:
        for token in _OPEN.values():
            token.close()
        _OPEN.clear()
