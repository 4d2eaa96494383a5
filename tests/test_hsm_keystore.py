"""Issuer keys in an HSM over PKCS#11 (issuer/hsm.py), against SoftHSM2: keys generated in
the token, never extractable; certificates, CRLs, OCSP responses, CSRs and COSE signatures
built by ``cryptography`` and signed by the token (OpenSSL reads the certificate); and the
whole main job (``mcred demo``: provisioning, presentation, JPKI signature with OCSP,
handover) on an installation with ``MCRED_KEYSTORE=pkcs11``, with no key file written."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from softhsm import SOFTHSM_PIN

from issuer.hsm import SOFTHSM2, HsmError, Pkcs11KeyStore
from issuer.keystore import KeyNotFound, KeyStoreError

pkcs11 = pytest.importorskip("pkcs11", reason="needs python-pkcs11 (the test extra installs it)")
PIN = SOFTHSM_PIN


@pytest.fixture
def token(softhsm_token):
    return softhsm_token


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.mark.parametrize("algorithm", ["p256", "p384", "rsa2048"])
def test_keys_are_born_in_the_token_and_sign_everything_there(token, algorithm, tmp_path):
    ks = Pkcs11KeyStore(SOFTHSM2, token, PIN)
    signer = ks.create("ca-1", algorithm)
    assert ks.has("ca-1") and ks.labels() == ["ca-1"] and signer.algorithm == algorithm
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = signer.sign_certificate(
        x509.CertificateBuilder().subject_name(_name("hsm ca")).issuer_name(_name("hsm ca"))
        .public_key(signer.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    cert.verify_directly_issued_by(cert)
    crl = signer.sign_crl(x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
                          .last_update(now).next_update(now + dt.timedelta(days=1)))
    assert crl.is_signature_valid(signer.public_key())
    resp = signer.sign_ocsp(ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=cert, algorithm=hashes.SHA256(), cert_status=ocsp.OCSPCertStatus.GOOD,
        this_update=now, next_update=now + dt.timedelta(minutes=10), revocation_time=None,
        revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, cert))
    key = signer.public_key()
    if algorithm == "rsa2048":
        key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), resp.signature_hash_algorithm)
        key.verify(signer.sign(b"data"), b"data", padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
        raw = signer.sign_raw(b"cose tbs")  # COSE form r || s
        assert len(raw) == 2 * ((key.curve.key_size + 7) // 8)
    csr = signer.sign_csr(x509.CertificateSigningRequestBuilder().subject_name(_name("csr")))
    assert csr.is_signature_valid
    pem = tmp_path / "ca.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if shutil.which("openssl"):
        out = subprocess.run(["openssl", "verify", "-CAfile", str(pem), str(pem)],
                             capture_output=True, text=True)
        assert out.stdout.strip().endswith(": OK"), out.stdout + out.stderr
    # a second store on the same token finds the key again by its label
    again = Pkcs11KeyStore(SOFTHSM2, token, PIN).signer("ca-1")
    assert again.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_private_key_never_leaves_the_token(token):
    ks = Pkcs11KeyStore(SOFTHSM2, token, PIN)
    signer = ks.create("ds-1", "p256")
    with pytest.raises(KeyStoreError, match="lives in the HSM"):
        signer._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # noqa: SLF001
                                  serialization.NoEncryption())
    with pytest.raises(KeyStoreError, match="lives in the HSM"):
        signer._key.private_numbers()  # noqa: SLF001
    lib = pkcs11.lib(SOFTHSM2)
    with lib.get_token(token_label=token).open() as session:  # the process is logged in already
        (priv,) = session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                                       pkcs11.Attribute.LABEL: "ds-1"})
        assert priv[pkcs11.Attribute.SENSITIVE] and not priv[pkcs11.Attribute.EXTRACTABLE]
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            priv[pkcs11.Attribute.VALUE]  # noqa: B018 - the token refuses to reveal it


def test_refusals_are_typed(token):
    with pytest.raises(HsmError, match="PinIncorrect"):
        Pkcs11KeyStore(SOFTHSM2, token, "000000")  # wrong PIN
    with pytest.raises(HsmError, match="NoSuchToken"):
        Pkcs11KeyStore(SOFTHSM2, "no-such-token", PIN)
    with pytest.raises(HsmError, match="needs the token's user PIN"):
        Pkcs11KeyStore.from_env({"MCRED_PKCS11_TOKEN": token})
    ks = Pkcs11KeyStore(SOFTHSM2, token, PIN)
    with pytest.raises(HsmError, match="another PIN"):  # open in this process: no second login
        Pkcs11KeyStore(SOFTHSM2, token, "000000")
    ks.create("a", "p384")
    with pytest.raises(KeyStoreError, match="exists already"):
        ks.create("a", "p384")
    with pytest.raises(KeyStoreError, match="invalid key label"):
        ks.create("../a", "p256")
    with pytest.raises(KeyStoreError, match="unsupported"):
        ks.create("b", "rsa1024")
    with pytest.raises(KeyNotFound):
        ks.signer("nope")


def test_the_main_job_runs_with_issuer_keys_in_the_hsm(token, home, monkeypatch):
    import os

    from mcred.context import Context
    from mcred.demo import run_demo

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setenv("MCRED_KEYSTORE", "pkcs11")
    monkeypatch.setenv("MCRED_PKCS11_TOKEN", token)
    monkeypatch.setenv("MCRED_PKCS11_PIN", PIN)
    ctx = Context.open(home)
    assert isinstance(ctx.keystore, Pkcs11KeyStore)
    said: list[str] = []
    run_demo(ctx, said.append)
    assert any("VALID" in line for line in said) and any("refuses" in line for line in said), said
    labels = Pkcs11KeyStore(SOFTHSM2, token, PIN).labels()
    assert any(label.startswith("mdoc-iaca") for label in labels)
    assert any(label.startswith("mdoc-ds") for label in labels)
    assert any(label.startswith("mdoc-status") for label in labels)
    assert len(labels) >= 6, labels  # and the JPKI roots / OCSP signers
    keys = home / "keys"
    assert not keys.exists() or not list(keys.glob("*.pem"))  # no issuer key on disk
    monkeypatch.setenv("MCRED_KEYSTORE", "vault")
    with pytest.raises(KeyStoreError, match="MCRED_KEYSTORE"):
        Context.open(home).keystore  # noqa: B018


def test_a_key_destroyed_leaves_no_object_on_the_token(token):
    """``destroy``: ``C_DestroyObject`` on the pair's private and public key objects; the
    token holds neither afterwards (looked up in a session of its own), the store finds no
    key, a signer handed out before is refused (``KeyNotFound``, not a token error), and a
    second destroy is ``KeyNotFound``. The other keys stay and sign."""
    ks = Pkcs11KeyStore(SOFTHSM2, token, PIN)
    before = ks.create("mdoc-iaca-1", "p256")
    before.sign(b"x")  # its handle cached for signing
    ks.create("mdoc-iaca-2", "p384")
    ks.destroy("mdoc-iaca-1")
    lib = pkcs11.lib(SOFTHSM2)
    with lib.get_token(token_label=token).open() as session:
        assert list(session.get_objects({pkcs11.Attribute.LABEL: "mdoc-iaca-1"})) == []
        assert len(list(session.get_objects({pkcs11.Attribute.LABEL: "mdoc-iaca-2"}))) == 2
    assert not ks.has("mdoc-iaca-1") and ks.labels() == ["mdoc-iaca-2"]
    assert not Pkcs11KeyStore(SOFTHSM2, token, PIN).has("mdoc-iaca-1")
    with pytest.raises(KeyNotFound):
        ks.signer("mdoc-iaca-1")
    with pytest.raises(KeyNotFound):
        before.sign(b"x")
    with pytest.raises(KeyNotFound):
        ks.destroy("mdoc-iaca-1")
    with pytest.raises(KeyStoreError, match="invalid key label"):
        ks.destroy("../x")
    assert ks.signer("mdoc-iaca-2").sign(b"x")


def test_an_iaca_revoked_with_its_key_destroyed_leaves_nothing_on_the_token(token, tmp_path):
    """The mdoc PKI over the token: ``mcred mdoc iaca revoke 1 --destroy-key`` destroys the
    IACA's pair in the token; its certificate is still served (read from the registry), and
    the next generation's keys in the same token sign its CRL."""
    from sqlalchemy.orm import sessionmaker

    from issuer.mdoc.service import MdocService
    from mcred.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    svc = MdocService(sessionmaker(engine, expire_on_commit=False), Pkcs11KeyStore(SOFTHSM2, token, PIN),
                      "http://issuer.test")
    first = svc.setup()[0].certificate
    done = svc.revoke_iaca(1, "cACompromise", destroy_key=True)
    assert done.key_destruction.changed and not done.key_destruction.found_absent
    with pkcs11.lib(SOFTHSM2).get_token(token_label=token).open() as session:
        assert list(session.get_objects({pkcs11.Attribute.LABEL: "mdoc-iaca-1"})) == []
        assert len(list(session.get_objects({pkcs11.Attribute.LABEL: "mdoc-iaca-2"}))) == 2
    assert svc.iaca_certificate(1) == first and svc.trusted_iacas() == [svc.iaca_certificate()]
    crl = svc.iaca_crl(2)
    assert crl.is_signature_valid(svc.iaca_certificate().public_key())
    assert not svc.destroy_key("mdoc-iaca-1").changed
    engine.dispose()
