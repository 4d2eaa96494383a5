"""The age_over_NN an installation issues beyond 18 and 20 (``MCRED_MDOC_AGE_OVER``,
``IssuancePolicy.age_over``): a reader asking for an NN the mdoc does not hold gets only
the nearest one (ISO/IEC 18013-5 7.2.5), so an issuer whose readers ask for 65 (a senior
discount) issues it. 18 and 20 are always issued; a setting that is not a list of NN is
refused by name."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from issuer.mdoc.errors import IssuanceError
from issuer.mdoc.issuance import IssuancePolicy
from mcred.cli.main import app
from protocols.cardsub import (
    DEFAULT_AGE_THRESHOLDS,
    ISO_NAMESPACE,
    ElementError,
    check_age_thresholds,
)
from protocols.mdoc import IssuerSigned

HOLDER = {"family_name": "山田", "given_name": "一郎", "family_name_kana": "ヤマダ",
          "given_name_kana": "イチロウ", "birth_date": "1950-04-01", "sex": 1,
          "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"}


def _issue(tmp_path):  # noqa: ANN001, ANN202
    holder, key, out = tmp_path / "h.json", tmp_path / "k.pem", tmp_path / "m.cbor"
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False))
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    r = CliRunner().invoke(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                                 "--out", str(out), "--json"])
    return r, IssuerSigned.from_cbor(out.read_bytes()) if r.exit_code == 0 else None


def _ages(issued: IssuerSigned) -> dict[str, dict[str, bool]]:
    return {ns: {i.element_identifier: i.element_value for i in items if i.element_identifier.startswith("age_over_")}
            for ns, items in issued.items().items()}


def test_an_installation_issues_the_age_over_nn_it_is_set_to_beside_18_and_20(home, tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_MDOC_AGE_OVER", " 65, 15 ")
    r, issued = _issue(tmp_path)
    assert r.exit_code == 0, r.output
    age = dt.date.today().year - 1950  # born 1 April 1950: 75 or 76, over 65 either way
    want = {"age_over_15": True, "age_over_18": True, "age_over_20": True, "age_over_65": age >= 65}
    ages = _ages(issued)
    assert ages[ISO_NAMESPACE] == want and ages["jp.mcred.mynumber.cardsub.1"] == want


def test_without_the_setting_18_and_20_are_issued(home, tmp_path, monkeypatch):
    monkeypatch.delenv("MCRED_MDOC_AGE_OVER", raising=False)
    r, issued = _issue(tmp_path)
    assert r.exit_code == 0, r.output
    assert set(_ages(issued)[ISO_NAMESPACE]) == {"age_over_18", "age_over_20"}


@pytest.mark.parametrize("value", ["100", "0", "sixty", "65;70", "６５", "-5"])
def test_a_setting_that_is_not_a_list_of_nn_is_refused_by_name(home, tmp_path, monkeypatch, value):
    monkeypatch.setenv("MCRED_MDOC_AGE_OVER", value)
    from mcred.context import ConfigError

    r, _ = _issue(tmp_path)
    # mcred's entry point (mcred.fatal) says a ConfigError as one line, `error: ...`, exit 2
    assert isinstance(r.exception, ConfigError), r.output
    assert "MCRED_MDOC_AGE_OVER" in str(r.exception) and "1 to 99" in str(r.exception)


@pytest.mark.parametrize("bad", [(100,), (0,), (True,), ("65",), (6.5,), 65])
def test_the_policy_and_the_rule_refuse_what_is_not_an_nn(bad):
    with pytest.raises(ElementError):
        check_age_thresholds(bad)
    with pytest.raises(IssuanceError, match="issuance policy: age threshold"):
        IssuancePolicy(age_over=bad)


def test_the_policy_keeps_18_and_20_and_sorts():
    assert IssuancePolicy(age_over=(65, 15)).age_over == (15, 18, 20, 65)
    assert IssuancePolicy(age_over=()).age_over is DEFAULT_AGE_THRESHOLDS
    assert IssuancePolicy().age_over is DEFAULT_AGE_THRESHOLDS


def test_a_server_with_a_bad_setting_does_not_start(home, monkeypatch):
    """`mcred serve` (and uvicorn's factory) stop at the start with the setting named, not
    at the first mdoc a phone asks for."""
    from mcred.context import ConfigError
    from mcred.service import create_app

    monkeypatch.setenv("MCRED_MDOC_AGE_OVER", "18,120")
    with pytest.raises(ConfigError, match="MCRED_MDOC_AGE_OVER='18,120': '120'"):
        create_app(job_workers=1)
