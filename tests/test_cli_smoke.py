from typer.testing import CliRunner

from mcred.cli.main import app


def test_help_lists_areas():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "mdoc" in result.output


def test_version_names_mcred_and_its_crypto():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("mcred ") and "cryptography " in r.output
