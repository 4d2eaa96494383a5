"""A document-signer revocation reaches a reader over HTTP (issue 5): a phone provisioned by
``mcred.provision`` presents to the reader service; the saved transcript verifies with
``mcred verify --ds-crl`` (the IACA CRL fetched from the DS certificate's distribution
point on the issuer's uvicorn); after ``revoke_signer`` the same transcript is refused by
``ds_revocation`` alone, with the reason."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization
from test_present_http import present, world  # noqa: F401 - the module's own instance
from typer.testing import CliRunner

from mcred.cli.main import app as cli
from mcred.provision import mdoc_service


def _verify(saved, iaca) -> tuple[int, dict]:
    out = CliRunner().invoke(cli, ["verify", str(saved), "--trust", str(iaca), "--ds-crl",
                                   "--json"])
    return out.exit_code, json.loads(out.output)


def test_saved_presentation_is_refused_once_its_ds_is_revoked(world, tmp_path):  # noqa: F811
    svc = mdoc_service(world["ctx"])
    saved, iaca = tmp_path / "p.cbor", tmp_path / "iaca.pem"
    iaca.write_bytes(svc.iaca_certificate().public_bytes(serialization.Encoding.PEM))
    out = present(world)
    assert out.valid
    saved.write_bytes(out.saved())
    code, result = _verify(saved, iaca)
    checks = {c["name"]: c for c in result["checks"]}
    assert code == 0 and checks["ds_revocation"]["passed"], result
    assert "not on the IACA CRL (http://127.0.0.1:" in checks["ds_revocation"]["reason"]

    (ds,) = [s for s in svc.signers() if s.active]
    svc.revoke_signer(ds.serial, "keyCompromise", actor="test")
    code, result = _verify(saved, iaca)
    failed = {c["name"]: c["reason"] for c in result["checks"] if not c["passed"]}
    assert code == 1 and list(failed) == ["ds_revocation"], failed
    assert f"DS serial {ds.serial} revoked (keyCompromise)" in failed["ds_revocation"]
    codes = {c["name"]: c["code"] for c in result["checks"]}
    assert codes["ds_revocation"] == "ds_revoked" and set(codes.values()) == {"ok", "ds_revoked"}, codes
    assert result["documents"] == []
