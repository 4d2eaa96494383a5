from typer.testing import CliRunner

from mcred.cli.main import app


def test_help_lists_areas():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "mdoc" in result.output
