"""The composition root's context: one installation's data directory, database and keys.

Everything a command or the HTTP service needs is built here from the data directory, and
handed to the parties (who never build their own wiring).
"""

from __future__ import annotations

import datetime as dt
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from issuer.keystore import FileKeyStore, KeyStore, KeyStoreError
from mcred.db import database_url, open_engine
from mcred.home import data_home
from tsm.errors import MasterKeyError
from tsm.keys import MasterKey, default_master_key
from tsm.oce import OceCredential

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


FIRST_CONTACTS = ("scp11", "scp11a", "scp11b", "factory-keys")


def first_contact() -> str:
    """``$MCRED_TSM_FIRST_CONTACT``: how the TSM meets a factory-fresh SE (specs/tsm.md
    "First contact"). ``scp11`` (default): the SE proves itself with its maker's
    certificate and the TSM with its OCE certificate (SCP11a), or, where the SE offers no
    SCP11a, the SE alone (SCP11b); the factory keys are replaced under the session's keys.
    ``scp11a``: SCP11a only. ``scp11b``: SCP11b only (the TSM shows no OCE identity).
    ``factory-keys``: the published GP test keys, for an SE without SCP11."""
    kind = os.environ.get("MCRED_TSM_FIRST_CONTACT", "scp11")
    if kind not in FIRST_CONTACTS:
        raise ConfigError(f"MCRED_TSM_FIRST_CONTACT={kind[:40]!r}: use {', '.join(FIRST_CONTACTS[:-1])} "
                          f"or {FIRST_CONTACTS[-1]}")
    return kind


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
    #: The clock of the issuer's services built for this context (:func:`mcred.mdoc_flow.mdoc_service`,
    #: :func:`mcred.jpki_flow.jpki_issuer`, :func:`mcred.timestamps.time_stamp_authority`): None, the
    #: system's; a test sets one to move the installation through time (a root's last months, a CRL
    #: near its nextUpdate) as the service and its scheduled housekeeping see it.
    clock: Callable[[], dt.datetime] | None = field(default=None, compare=False, repr=False)

    def clocked(self, key: tuple) -> tuple:
        """``key`` (what tells one installation's services from another's in a process), with
        the clock when one is set: services on a test's clock are not the system clock's."""
        return key if self.clock is None else (*key, self.clock)

    def clock_option(self) -> dict[str, Callable[[], dt.datetime]]:
        """``{"clock": ...}`` for a service's constructor when a clock is set, else nothing
        (the service's own default, the system clock)."""
        return {} if self.clock is None else {"clock": self.clock}

    @classmethod
    def open(cls, home: Path | None = None, database: str | None = None, *,
             public_url: str | None = None) -> Context:
        h = data_home(home)
        if public_url is not None:
            return cls(home=h, database=database or database_url(h), public_url=public_url)
        return cls(home=h, database=database or database_url(h))

    @cached_property
    def engine(self) -> Engine:
        engine = open_engine(self.database)  # DatabaseUnavailable when it cannot be opened at all
        # the pool's connections closed when this context goes, or at the latest when the
        # process exits: on SQLite that is when the planner's statistics are gathered
        # (mcred.db.optimize_sqlite)
        weakref.finalize(self, engine.dispose)
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

    @property
    def se_roots(self) -> tuple[x509.Certificate, ...] | None:
        """The SE makers the TSM trusts at first contact (``Tsm(se_roots=...)``): this
        installation's own maker (``<home>/se-maker/root.pem``, made with its first phone)
        and the PEM files named in ``$MCRED_SE_MAKER_ROOTS`` (separated by ``os.pathsep``);
        None under ``MCRED_TSM_FIRST_CONTACT=factory-keys``. Read at each call: the
        installation's first phone makes its maker."""
        if first_contact() == "factory-keys":
            return None
        from wallet_sim.se.maker import root_path

        paths = [root_path(self.home)] if root_path(self.home).is_file() else []
        for name in filter(None, os.environ.get("MCRED_SE_MAKER_ROOTS", "").split(os.pathsep)):
            p = Path(name)
            if not p.is_file():
                raise ConfigError(f"MCRED_SE_MAKER_ROOTS: {name[:200]!r} is not a file (give PEM certificates "
                                  f"of SE makers, separated by {os.pathsep!r})")
            paths.append(p)
        roots: list[x509.Certificate] = []
        for p in paths:
            try:
                roots.extend(x509.load_pem_x509_certificates(p.read_bytes()))
            except ValueError as exc:
                raise ConfigError(f"SE maker roots {str(p)[:200]!r}: not PEM certificates ({exc})") from None
        return tuple(roots)

    @property
    def oce(self) -> OceCredential | None:
        """The TSM's SCP11a identity (``Tsm(oce=...)``): the installation's lab OCE
        (``<home>/tsm-oce/``, made on first use; its key in the PKCS#11 token under
        ``MCRED_TSM_MASTER_KEY=pkcs11``) under ``MCRED_TSM_FIRST_CONTACT`` scp11 and scp11a;
        None otherwise."""
        return self.oce_credentials()[0]

    def oce_credentials(self) -> tuple[OceCredential | None, tuple[OceCredential, ...]]:
        """The TSM's current SCP11a identity (:attr:`oce`) and its chains from the KLOC CAs
        it rotated away from (``Tsm(retired_oce=...)``; `mcred tsm oce-ca --rotate`), both
        with the same key."""
        if first_contact() not in ("scp11", "scp11a"):
            return None, ()
        from tsm.oce import OceError, lab_oce, retired_oce

        key = None
        if master_key_store() == "pkcs11":  # the TSM's keys live in the token: SK.OCE.ECKA too
            from tsm.hsm import HsmOceKey

            key = HsmOceKey.from_env()
        try:
            return lab_oce(self.home, key), retired_oce(self.home, key)
        except OceError as exc:
            raise ConfigError(f"the TSM's OCE identity: {exc}") from None

    @property
    def require_scp11a(self) -> bool:
        """``MCRED_TSM_FIRST_CONTACT=scp11a``: an SE that offers no SCP11a is refused."""
        return first_contact() == "scp11a"

    def tsm_trust(self) -> dict[str, object]:
        """What a :class:`tsm.jobs.Tsm` is given to meet factory-fresh SEs: ``se_roots``,
        ``oce``, ``retired_oce`` and ``require_scp11a``, read from the environment at each
        call."""
        roots = self.se_roots
        if roots is None:
            return {"se_roots": None}
        oce, retired = self.oce_credentials()
        return {"se_roots": roots, "oce": oce, "retired_oce": retired, "require_scp11a": self.require_scp11a}

    def new_phone(self, *, scp11a: bool = True, kloc: x509.Certificate | None = None, **kw: object) -> str:
        """A new phone from the lab's factory (``wallet_sim.create_phone``). ``scp11a``: its
        SE's issuer names a TSM as the OCE that may load keys (the factory puts that TSM's
        KLOC CA key into the SE, which then offers SCP11a and loads no key under SCP11b):
        this installation's TSM, or the one whose CA certificate ``kloc`` is (another
        installation's `mcred tsm oce-ca`). False makes an SE that offers SCP11b only."""
        import wallet_sim
        from tsm.oce import kloc_certificate

        key = None
        if scp11a:
            key = (kloc if kloc is not None else kloc_certificate(self.home)).public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                raise ConfigError("the TSM's KLOC CA must certify a P-256 key (GPCS Amendment F, CA-KLOC)")
        return wallet_sim.create_phone(self.home, kloc=key, **kw)  # type: ignore[arg-type]

    @cached_property
    def master_key(self) -> MasterKey:
        """The TSM's master key: ``$MCRED_TSM_MASTER_KEY`` ``file`` (default:
        ``<home>/tsm/master.key``, 0600) or ``pkcs11`` (generated and used in the issuer's
        PKCS#11 token, tsm/hsm.py); created on first use either way."""
        if master_key_store() == "pkcs11":
            from tsm.hsm import HsmMasterKey

            return HsmMasterKey.from_env()
        return default_master_key(self.home)
