"""A stand-alone reader takes trust files put in place while it runs (specs/presentation.md,
"Trust files"): after an issuer's IACA rollover the operator writes the new bundle (``mcred
export iaca``) over the one ``mcred reader serve --trust`` named, and the reader trusts the new
IACA, and drops one the file no longer holds, without a restart; a broken file keeps the
trust it had and says why; /readyz counts the IACAs of the file as it is."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from test_iaca_profiles import make_iaca

from mcred.present import reader_app
from mcred.present_wiring import ReaderServeConfig, ReloadingVerifier

PEM = serialization.Encoding.PEM


class Ticks:
    """A monotonic clock a test moves."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _write(path, *certs) -> None:  # noqa: ANN001
    path.write_bytes(b"".join(c.public_bytes(PEM) for c in certs))
    st = path.stat()  # a new mtime even within the file system's time granularity
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_the_reader_takes_a_new_bundle_drops_a_removed_iaca_and_keeps_its_trust_on_a_broken_file(tmp_path):
    _k1, one = make_iaca(common_name="mcred TEST IACA 1")
    _k2, two = make_iaca(common_name="mcred TEST IACA 2")
    bundle = tmp_path / "iaca.pem"
    _write(bundle, one)
    service, _rp, what = ReaderServeConfig(trust=(str(bundle),)).build()
    verifier = service.verifier
    assert isinstance(verifier, ReloadingVerifier) and "trusting 1 IACA(s)" in what
    ticks = Ticks()
    verifier._monotonic, verifier._checked = ticks, 0.0
    client = TestClient(reader_app(service))

    def trusted() -> list:
        return verifier.trust().certificates

    assert trusted() == [one]
    _write(bundle, two, one)  # the issuer rolled its IACA over: the bundle it publishes
    ticks.t = 10.0
    assert trusted() == [one]  # looked at every 30 s, not on every verification
    ticks.t = 31.0
    assert set(trusted()) == {one, two} and verifier.reloads == 1
    assert "2 of 2 IACA(s) valid now" in client.get("/readyz").json()["checks"]["trust"]["detail"]
    _write(bundle, two)  # the older IACA's mdocs have all ended: the operator drops it
    ticks.t = 62.0
    assert trusted() == [two] and verifier.reloads == 2
    bundle.write_bytes(b"not PEM")  # half written, or the wrong file
    ticks.t = 93.0
    assert trusted() == [two] and verifier.reloads == 2
    assert "trust files changed but were not taken" in verifier.last_error
    assert "1 of 1 IACA(s) valid now" in client.get("/readyz").json()["checks"]["trust"]["detail"]
    _write(bundle, one, two)
    ticks.t = 124.0
    assert set(trusted()) == {one, two} and verifier.last_error is None


def test_without_trust_files_the_pipeline_is_used_as_built(tmp_path):
    """A reader of a VICAL-less, file-less configuration (JPKI relying party only) has nothing
    to look at: no reloading wrapper."""
    _k, one = make_iaca()
    roots = tmp_path / "roots.pem"
    roots.write_bytes(one.public_bytes(PEM))
    service, rp, _ = ReaderServeConfig(jpki_roots=(str(roots),)).build()
    assert not isinstance(service.verifier, ReloadingVerifier) and rp is not None
