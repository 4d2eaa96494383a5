"""``mcred holder example``: a holder file a new user starts from. What it prints is a file
``mcred provision --holder`` takes as it is; a birth date it is given is checked the way
provisioning checks it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mcred.cli.main import app
from mcred.samples import HOLDER


def test_the_example_is_a_holder_file_provisioning_takes(tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["holder", "example", "--roman"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record == {**HOLDER, "family_name_roman": "SHIKEN", "given_name_roman": "TARO"}
    assert not {"pin", "password", "puk"} & set(record)  # provisioning generates and shows them
    holder = tmp_path / "holder.json"
    holder.write_text(r.stdout, encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(holder), "--json",
                                 "--mdoc-batch", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["auth_certificate"]["serial"] and out["mdocs"] == 1


def test_a_birth_date_given_is_the_files_and_a_bad_one_is_refused_as_provisioning_would(tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["holder", "example", "--birth-date", "2016-05-10"])
    assert r.exit_code == 0 and json.loads(r.stdout)["birth_date"] == "2016-05-10"
    for bad, said in (("2016-02-30", "not a calendar date"), ("1899-12-31", "1900")):
        r = CliRunner().invoke(app, ["holder", "example", "--birth-date", bad])
        assert r.exit_code == 2 and r.stdout == ""
        assert "--birth-date" in r.stderr and said in r.stderr
