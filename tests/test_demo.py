"""``mcred demo`` runs on embedded defaults and exits 0 (issue 7 item 4)."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from mcred.cli.main import app


def test_demo_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    r = CliRunner().invoke(app, ["demo"])
    assert r.exit_code == 0, r.output
    out = r.output
    for marker in ("1.1 Provisioned", "over the air: the TSM's SCP03 session carried by GP SERAM", "2.2 Phone", "3.2 Phone", "4. Handover",
                   "5. The reader refuses", "revoked (INVALID)", "cessationOfOperation",
                   "8. The new phone", "9. The other holder's phone", "10. The new phone's MSOs are refreshed",
                   "11. The other holder moves", "sees revoked (superseded)", "it learns what changed: address",
                   "reader CA revoked (keyCompromise): the wallet holds that CA's CRL, so the reader is NOT trusted",
                   "signs a contract PDF inside it (PAdES",
                   "12. Her son, aged 10, gets a phone too", "no signing certificate: holder under 15",
                   "reads: the holder is under 21 (answered by age_over_20 = false",
                   "Done in"):
        assert marker in out, marker
