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


def public_url() -> str:
    """Base URL put into every credential and certificate (``$MCRED_PUBLIC_URL``)."""
    return os.environ.get("MCRED_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/")


@dataclass
class Context:
    home: Path
    database: str
    public_url: str = field(default_factory=public_url)

    @classmethod
    def open(cls, home: Path | None = None, database: str | None = None) -> Context:
        h = data_home(home)
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
