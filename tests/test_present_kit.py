"""Test kit for the presentation tests (imported by test_present_*, test_reader_*,
test_wallet_*): a throw-away mdoc PKI built with protocols.iaca, card-substitute mdocs
issued with the issuer's code (issuer.mdoc.issuance.sign_card_substitute), phones whose mdoc
applet is personalised directly through its STORE DATA records (the drill shortcut of
mcred.present), and an in-memory status list publisher with ETag / TTL / exp."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import wallet_sim
from issuer.mdoc.issuance import IssuancePolicy, device_key_from_spki, sign_card_substitute
from issuer.mdoc.pki import ActiveKey
from mcred.present import personalise_mdoc_directly
from protocols import cardsub, cose, iaca
from protocols.mdoc import MsoStatus, StatusListRef
from protocols.status import Status, StatusList, build_status_list_token
from reader.pipeline import HttpAnswer
from reader.trust import TrustStore

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
HOLDER = cardsub.parse_holder({
    "family_name": "山田", "given_name": "花子", "family_name_kana": "やまだ",
    "given_name_kana": "はなこ", "birth_date": "1990-04-01", "sex": 2,
    "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区",
    "family_name_roman": "YAMADA", "given_name_roman": "HANAKO"})
PORTRAIT = b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9"
NS = cardsub.DEFAULT_NAMES.namespace
DOCTYPE = cardsub.DEFAULT_NAMES.doctype
STATUS_URI = "https://issuer.test/status/1"


class _Signer:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._s = cose.key_signer(key)
        self.alg = self._s.alg

    def sign(self, tbs: bytes) -> bytes:
        return self._s.sign(tbs)


@dataclass
class Pki:
    iaca_key: ec.EllipticCurvePrivateKey
    iaca: x509.Certificate
    ds_key: ec.EllipticCurvePrivateKey
    ds: x509.Certificate
    status_key: ec.EllipticCurvePrivateKey
    status_cert: x509.Certificate

    @property
    def ds_active(self) -> ActiveKey:
        return ActiveKey("ds-test", "ds", self.ds, _Signer(self.ds_key))

    def trust(self) -> TrustStore:
        store = TrustStore()
        store.add(self.iaca)
        return store

    def iaca_pem(self) -> bytes:
        return self.iaca.public_bytes(serialization.Encoding.PEM)


def make_pki(name: str = "Test", now: dt.datetime = T0) -> Pki:
    start = now - dt.timedelta(days=30)
    ik = ec.generate_private_key(ec.SECP256R1())
    ic = iaca.sign(iaca.iaca_builder(
        ik.public_key(), common_name=f"{name} IACA", not_before=start,
        not_after=start + dt.timedelta(days=3000), issuer_alt_name_uri="https://issuer.test",
        crl_uri="https://issuer.test/crl"), ik)
    dk = ec.generate_private_key(ec.SECP256R1())
    dc = iaca.sign(iaca.document_signer_builder(
        dk.public_key(), ic, common_name=f"{name} DS", not_before=start,
        not_after=start + dt.timedelta(days=400), crl_uri="https://issuer.test/crl"), ik)
    sk = ec.generate_private_key(ec.SECP256R1())
    sc = iaca.sign(iaca.status_list_signer_builder(
        sk.public_key(), ic, common_name=f"{name} Status", not_before=start,
        not_after=start + dt.timedelta(days=400), crl_uri="https://issuer.test/crl"), ik)
    return Pki(ik, ic, dk, dc, sk, sc)


def issue(pki: Pki, spki: bytes, *, now: dt.datetime = T0, idx: int | None = 0,
          uri: str = STATUS_URI, policy: IssuancePolicy = IssuancePolicy()) -> bytes:
    """A card-substitute IssuerSigned for the device key ``spki`` (the issuer's code)."""
    status = None if idx is None else MsoStatus(StatusListRef(idx, uri))
    signed = sign_card_substitute(
        HOLDER, PORTRAIT, device_key_from_spki(spki), pki.ds_active, now=now,
        record_expiry=dt.date(2030, 4, 1), document_no="JPCS-TEST-0001", status=status, policy=policy)
    return signed.encode()


def make_phone(home: Path, pki: Pki, slots=(0,), **issue_kw) -> str:
    """A phone whose mdoc applet holds one credential per slot (status index = slot)."""
    pid = wallet_sim.create_phone(home)
    se = wallet_sim.open_secure_element(pid, home)
    personalise_mdoc_directly(
        se.transmit, list(slots), lambda slot: bytes(32),
        lambda slot, spki, proof: issue(pki, spki, **{"idx": slot, **issue_kw}))
    return pid


@dataclass
class StatusPublisher:
    """An issuer's status endpoint in memory, as a reader fetcher: ETag, 304, ttl, exp."""

    pki: Pki
    clock: object
    size: int = 64
    ttl: int = 300
    lifetime: int = 3600
    statuses: dict[int, int] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    down: bool = False
    signer_key: ec.EllipticCurvePrivateKey | None = None  # override: a key outside the chain
    _cache: dict = field(default_factory=dict)

    def token(self) -> bytes:
        key = (tuple(sorted(self.statuses.items())), self.signer_key is not None)
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now < hit[1] - dt.timedelta(seconds=self.ttl):
            return hit[0]
        lst = StatusList.empty(self.size, bits=2).updated(self.statuses)
        iat = now.replace(microsecond=0)
        token = build_status_list_token(
            lst, uri=STATUS_URI, iat=iat, exp=iat + dt.timedelta(seconds=self.lifetime), ttl=self.ttl,
            signer=_Signer(self.signer_key or self.pki.status_key), certificate=self.pki.status_cert)
        self._cache[key] = (token, iat + dt.timedelta(seconds=self.lifetime))
        return token

    def __call__(self, uri: str, etag: str | None) -> HttpAnswer:
        from reader.pipeline import FetchError

        self.calls.append((uri, etag))
        if self.down:
            raise FetchError("GET: connection refused (test)")
        if uri != STATUS_URI:
            return HttpAnswer(404, b"")
        token = self.token()
        tag = '"' + hashlib.sha256(token).hexdigest()[:16] + '"'
        headers = {"etag": tag, "cache-control": f"public, max-age={self.ttl}"}
        if etag == tag:
            return HttpAnswer(304, b"", headers)
        return HttpAnswer(200, token, headers)

    def set(self, index: int, status: Status) -> None:
        self.statuses[index] = int(status)


class Clock:
    def __init__(self, now: dt.datetime = T0 + dt.timedelta(minutes=1)) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += dt.timedelta(**kw)


def kit_world(tmp_path_factory, **phone) -> dict:
    """A module's world: a data directory, the kit's PKI and one provisioned phone
    (``phone``: :func:`make_phone`'s keywords, e.g. ``slots=(0, 1)``)."""
    home = tmp_path_factory.mktemp("home")
    pki = make_pki()
    return {"home": home, "pki": pki, "phone": make_phone(home, pki, **phone)}


def kit_pipeline(pki: Pki, clock: Clock | None = None):
    """A reader pipeline trusting ``pki``, its status lists from ``pki``'s publisher, on
    ``clock`` (a new kit clock, at T0 + 1 min, unless given)."""
    from mcred.present import reader_pipeline

    clock = clock or Clock()
    return reader_pipeline(trust=pki.trust(), clock=clock, fetcher=StatusPublisher(pki, clock))


def reader_world(home: Path) -> dict:
    """A phone holding an mdoc of a test PKI, and an online reader pipeline trusting that
    PKI (status lists from its publisher), on one clock: what the reader tests start from."""

    pki = make_pki()
    clock = Clock()
    pipe = kit_pipeline(pki, clock)
    return {"home": home, "pki": pki, "phone": make_phone(home, pki), "pipeline": pipe, "clock": clock}


@dataclass
class ReaderPki:
    """A reader CA and one reader certificate (EKU mdlReaderAuth), for readerAuth."""

    ca: x509.Certificate
    leaf: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    ca_key: ec.EllipticCurvePrivateKey | None = None
    """the reader CA's key (for its CRL)"""

    @property
    def chain(self) -> list[bytes]:
        return [self.leaf.public_bytes(serialization.Encoding.DER)]

    @property
    def signer(self):
        return cose.key_signer(self.key)


def reader_pki(cn: str = "Shop Reader 1", now: dt.datetime = T0, *, ca_cn: str = "Reader CA",
               dns: str | None = None, eku: bool = True) -> ReaderPki:
    """A reader CA and its reader certificate, valid around the kit's clock: with EKU
    mdlReaderAuth (``eku``), and a DNS SAN (``dns``, as a verifier's x509_san_dns needs)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca = (x509.CertificateBuilder().subject_name(name(ca_cn)).issuer_name(name(ca_cn))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=300)))
    if eku:
        leaf = leaf.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.0.18013.5.1.6")]), critical=True)
    if dns:
        leaf = leaf.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return ReaderPki(ca, leaf.sign(ca_key, hashes.SHA256()), key, ca_key)
