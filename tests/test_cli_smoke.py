from typer.testing import CliRunner

from mcred.cli.main import app


def test_help_lists_areas():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "mdoc" in result.output


def test_version_names_mcred_and_its_crypto():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("mcred ") and "cryptography " in r.output


def test_command_summaries_are_one_paragraph_without_source_line_breaks():
    """Each group's listing shows a command's first help paragraph: it must not carry the
    docstring's source line breaks (they printed as sentences broken mid-line), and the
    listing must still show the whole summary, e.g. demo's."""
    import typer.main

    def walk(command, path=()):
        if getattr(command, "commands", None):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    commands = list(walk(typer.main.get_command(app)))
    assert len(commands) > 40
    for path, command in commands:
        first = (command.help or "").split("\n\n")[0]
        assert "\n" not in first, (path, first)
    listing = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"}).output
    assert "show the old phone refused and the new one accepted" in listing
