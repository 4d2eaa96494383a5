"""The composition root's context: one installation's data directory, database and keys.

Everything a command or the HTTP service needs is built here from the data directory, and
handed to the parties (who never build their own wiring).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from issuer.keystore import FileKeyStore, KeyStore, KeyStoreError
from mcred.db import database_url, make_engine, migrate
from mcred.home import data_home
from tsm.errors import MasterKeyError
from tsm.keys import MasterKey, default_master_key

MASTER_KEY_STORES = ("file", "pkcs11")

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8470"


def master_key_store() -> str:
    """``$MCRED_TSM_MASTER_KEY``: where the TSM master key is, ``file`` (default) or ``pkcs11``."""
    kind = os.environ.get("MCRED_TSM_MASTER_KEY", "file")
    if kind not in MASTER_KEY_STORES:
        raise MasterKeyError(f"MCRED_TSM_MASTER_KEY={kind!r}: use file or pkcs11")
    return kind


class ConfigError(ValueError):
    """A setting in the environment that cannot work, named with what it must be."""


def public_url() -> str:
    """Base URL put into every credential and certificate (``$MCRED_PUBLIC_URL``): http or
    https, with a host, short enough for the status lists' URIs it starts."""
    from urllib.parse import urlsplit

    from issuer.mdoc.status_lists import PUBLIC_URL_MAX

    url = os.environ.get("MCRED_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise ConfigError(f"MCRED_PUBLIC_URL={url[:80]!r}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"MCRED_PUBLIC_URL={url[:80]!r}: give an http or https URL with a host, "
                          f"e.g. {DEFAULT_PUBLIC_URL}")
    if parts.query or parts.fragment:
        raise ConfigError(f"MCRED_PUBLIC_URL={url[:80]!r}: a base URL has no query or fragment "
                          "(paths such as /status/<id> are appended to it)")
    if len(url) > PUBLIC_URL_MAX:
        raise ConfigError(f"MCRED_PUBLIC_URL is {len(url)} characters; at most {PUBLIC_URL_MAX} "
                          "(a status list's URI, the URL and /status/<32 hex>, is stored)")
    return url


@dataclass
class Context:
    home: Path
    database: str
    public_url: str = field(default_factory=public_url)

    @classmethod
    def open(cls, home: Path | None = None, database: str | None = None, *,
             public_url: str | None = None) -> Context:
        h = data_home(home)
        if public_url is not None:
            return cls(home=h, database=database or database_url(h), public_url=public_url)
        return cls(home=h, database=database or database_url(h))

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.database)
        migrate(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def keystore(self) -> KeyStore:
        """The issuer's keys: ``$MCRED_KEYSTORE`` ``file`` (default: encrypted PEM files in
        ``<home>/keys``) or ``pkcs11`` (an HSM token, issuer/hsm.py; one token per
        installation, since the key labels are the installation's)."""
        kind = os.environ.get("MCRED_KEYSTORE", "file")
        if kind == "pkcs11":
            from issuer.hsm import Pkcs11KeyStore

            return Pkcs11KeyStore.from_env()
        if kind != "file":
            raise KeyStoreError(f"MCRED_KEYSTORE={kind!r}: use file or pkcs11")
        return FileKeyStore(self.home / "keys")

    @cached_property
    def master_key(self) -> MasterKey:
        """The TSM's master key: ``$MCRED_TSM_MASTER_KEY`` ``file`` (default:
        ``<home>/tsm/master.key``, 0600) or ``pkcs11`` (generated and used in the issuer's
        PKCS#11 token, tsm/hsm.py); created on first use either way."""
        if master_key_store() == "pkcs11":
            from tsm.hsm import HsmMasterKey

            return HsmMasterKey.from_env()
        return default_master_key(self.home)
