"""`mcred mdoc verify` and `mcred inspect` on Annex D data (files written to tmp_path)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from test_mdoc_vectors import cert, hexv, private_key
from typer.testing import CliRunner

from mcred.cli.main import app


@pytest.fixture
def files(tmp_path):
    paths = {
        "response": tmp_path / "response.cbor",
        "iaca": tmp_path / "iaca.pem",
        "transcript": tmp_path / "transcript.cbor",
        "key": tmp_path / "reader.pem",
    }
    paths["response"].write_bytes(hexv("device_response"))
    paths["iaca"].write_bytes(cert("iaca_cert").public_bytes(Encoding.PEM))
    paths["transcript"].write_bytes(hexv("session_transcript_bytes"))
    paths["key"].write_bytes(private_key("ephemeral_reader_key").private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return paths


def _args(f, *extra):
    return ["mdoc", "verify", str(f["response"]), "--trust-anchor", str(f["iaca"]),
            "--session-transcript", str(f["transcript"]), "--reader-key", str(f["key"]), *extra]


def test_verify_annex_d_passes(files):
    result = CliRunner().invoke(app, _args(files, "--at", "2021-01-01T00:00:00Z"))
    assert result.exit_code == 0, result.output
    assert "family_name" in result.output and "VALID" in result.output


def test_verify_json_shape(files):
    result = CliRunner().invoke(app, _args(files, "--at", "2021-01-01T00:00:00Z", "--json"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"valid", "checks", "documents"} and out["valid"] is True
    assert all(set(c) == {"name", "passed", "reason", "code"} and c["code"] == "ok" for c in out["checks"])
    assert out["documents"][0]["docType"] == "org.iso.18013.5.1.mDL"
    assert out["documents"][0]["elements"]["org.iso.18013.5.1"]["family_name"] == "Doe"


def test_transcript_without_tag_24(files):
    files["transcript"].write_bytes(hexv("session_transcript"))
    assert CliRunner().invoke(app, _args(files, "--at", "2021-01-01T00:00:00Z")).exit_code == 0


def test_verify_expired_exits_1(files):
    result = CliRunner().invoke(app, _args(files, "--at", "2025-01-01T00:00:00Z", "--json"))
    assert result.exit_code == 1
    assert "validity" in [c["name"] for c in json.loads(result.output)["checks"] if not c["passed"]]


def test_verify_without_reader_key_exits_1(files):
    args = ["mdoc", "verify", str(files["response"]), "--trust-anchor", str(files["iaca"]),
            "--session-transcript", str(files["transcript"]), "--at", "2021-01-01T00:00:00Z"]
    assert CliRunner().invoke(app, args).exit_code == 1


@pytest.mark.parametrize("broken", ["response", "iaca", "transcript", "key"])
def test_unreadable_inputs_exit_2(files, broken):
    files[broken].write_bytes(b"\xff\x00 not it")
    assert CliRunner().invoke(app, _args(files, "--at", "2021-01-01T00:00:00Z")).exit_code == 2


def test_missing_file_exits_2(files, tmp_path):
    files["response"] = tmp_path / "nope.cbor"
    assert CliRunner().invoke(app, _args(files)).exit_code == 2


def test_inspect_unwraps_tag_24(files):
    result = CliRunner().invoke(app, ["inspect", str(files["response"])])
    assert result.exit_code == 0, result.output
    assert '24(<< {' in result.output and '"elementIdentifier": "family_name"' in result.output
    assert '"docType": "org.iso.18013.5.1.mDL"' in result.output
    assert '1004("2019-10-20")' in result.output


def test_inspect_unreadable(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x01\x02")
    assert CliRunner().invoke(app, ["inspect", str(p)]).exit_code == 2


@pytest.mark.parametrize("form", ["cbor", "base64url"])
def test_verify_an_issuer_signed_on_its_own(files, tmp_path, form):
    """The Annex D document's IssuerSigned alone, as CBOR or as the base64url text OpenID4VCI
    carries: the issuer-side checks pass, none of device authentication is listed; a wrong
    --doc-type fails doc_type."""
    import base64

    from protocols import mdoc

    issued = mdoc.DeviceResponse.decode(hexv("device_response")).documents[0].issuer_signed.encode()
    path = tmp_path / "issuer_signed"
    path.write_bytes(issued if form == "cbor" else base64.urlsafe_b64encode(issued).rstrip(b"=") + b"\n")
    base = ["mdoc", "verify", str(path), "--trust-anchor", str(files["iaca"]), "--at", "2021-01-01T00:00:00Z"]
    result = CliRunner().invoke(app, [*base, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"valid", "checks", "documents"} and out["valid"]
    assert [c["name"] for c in out["checks"]] == ["issuer_certificate_chain", "issuer_signature", "mso_structure",
                                                  "doc_type", "value_digests", "validity"]
    assert out["documents"][0]["elements"]["org.iso.18013.5.1"]["family_name"] == "Doe"
    table = CliRunner().invoke(app, base)
    assert table.exit_code == 0 and "IssuerSigned on its own" in table.output and "VALID" in table.output
    wrong = CliRunner().invoke(app, [*base, "--doc-type", "org.iso.23220.photoid.1", "--json"])
    assert wrong.exit_code == 1
    assert [c["name"] for c in json.loads(wrong.output)["checks"] if not c["passed"]] == ["doc_type"]
    shown = CliRunner().invoke(app, ["inspect", str(path)])
    assert shown.exit_code == 0 and "issuerAuth" in shown.output


def test_a_hostile_doctype_and_element_name_cannot_drive_the_terminal(tmp_path):
    """Text an mdoc carries (docType, element identifiers) reaches the verifier's terminal
    with its control characters escaped and its rich markup left as text."""
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec
    from test_mdoc_issuing import NOW, issue, make_pki, present, transcript

    evil = "x\x1b]0;pwned\x07[link=http://evil.test]click[/link]"
    pki = make_pki()
    device = ec.generate_private_key(ec.SECP256R1())
    st = transcript()
    signed = issue(pki, device, doc_type=evil, elements={evil: {evil: "v\x1b[2J"}})
    (tmp_path / "r.cbor").write_bytes(present(signed, device, st))
    (tmp_path / "st.cbor").write_bytes(st.tagged)
    (tmp_path / "iaca.pem").write_bytes(pki[0].public_bytes(Encoding.PEM))
    result = CliRunner().invoke(app, ["mdoc", "verify", str(tmp_path / "r.cbor"), "--trust-anchor",
                                      str(tmp_path / "iaca.pem"), "--session-transcript", str(tmp_path / "st.cbor"),
                                      "--at", (NOW + dt.timedelta(hours=1)).isoformat()])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;pwned" in result.output and "[link=http://evil.test]" in result.output


def test_the_table_shows_each_code_in_80_columns(files):
    """The text verdict shows each check's code as --json has it, ``validity [expired]`` (as
    ``mcred jpki verify`` prints ``FAIL validity [expired]: ...``), and fits an 80-column
    terminal, the reason keeping a column of its own wide enough to read."""
    result = CliRunner().invoke(app, _args(files, "--at", "2025-01-01T00:00:00Z"), env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output
    printed = json.loads(CliRunner().invoke(app, _args(files, "--at", "2025-01-01T00:00:00Z", "--json")).output)
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80, result.output
    header = next(ln for ln in lines if "check [code]" in ln)
    assert [h.strip() for h in header.split("┃")[1:-1]] == ["check [code]", "result", "reason"], header
    assert len(header.split("┃")[3]) >= 36, header  # the reason's column
    rows: list[list[str]] = []  # each row's cells, a cell's lines joined
    for ln in lines:
        if ln.startswith("│"):
            cells = [c.strip() for c in ln.split("│")[1:-1]]
            if cells[1]:
                rows.append(cells)
            else:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    assert [(r[0], r[1]) for r in rows] == [(f"{c['name']} [{c['code']}]", "pass" if c["passed"] else "FAIL")
                                            for c in printed["checks"]], result.output
    assert ("validity [expired]", "FAIL") in [(r[0], r[1]) for r in rows]


def test_trust_and_trust_anchor_name_the_same_option_and_a_bundle_gives_each(files, tmp_path):
    """`mcred verify` says --trust and `mcred mdoc verify` --trust-anchor for the same thing: a
    user who typed one got 'No such option'. Each now takes both names; a bundle (mcred export
    iaca after an IACA rollover: the new IACA first) gives each of its IACAs."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_iaca_profiles import make_iaca

    other = make_iaca(ec.SECP256R1)[1].public_bytes(Encoding.PEM)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(other + files["iaca"].read_bytes())
    args = _args(files, "--at", "2021-01-01T00:00:00Z")
    args[args.index("--trust-anchor")] = "--trust"
    args[args.index(str(files["iaca"]))] = str(bundle)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "VALID" in result.output, result.output
    for command in (["verify"], ["mdoc", "verify"], ["status-list", "show"]):
        shown = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
        assert "--trust,--trust-anchor" in shown or "--trust-anchor,--trust" in shown, (command, shown)
