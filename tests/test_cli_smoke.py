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


def _commands():
    """(path, click command) of every command, groups included (typer vendors its own click)."""
    import typer.main

    def walk(command, path=()):
        yield path, command
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(app)))


def _help_texts(command):
    """The help texts of one command as written in the source (the markup escape undone)."""
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    return [t.replace("\\[", "[") for t in texts if t]


def test_help_keeps_bracketed_text_such_as_the_extras_of_install_hints():
    """typer reads help as rich markup, which ate `[pdf]` of pip install 'mcred[pdf]' (and
    '.[nfc]', '.[ble]'): every bracketed word a help text has must be in the --help output."""
    import re

    tag = re.compile(r"\[[a-z#/@][^\[\]\n]*\]")  # what rich would take for a markup tag
    extras = set()
    for path, command in _commands():
        wanted = {m for text in _help_texts(command) for m in tag.findall(text)}
        if not wanted:
            continue
        out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "1000"})
        assert out.exit_code == 0, (path, out.output)
        for m in wanted:
            assert m in out.output, (" ".join(path), m)
        extras |= {e for text in _help_texts(command) for e in re.findall(r"'(?:mcred|\.)\[[\w,-]+\]'", text)}
    # the scan saw the install hints the walk-through found cut
    assert {"'mcred[pdf]'", "'mcred[xml]'", "'.[nfc]'", "'.[ble]'"} <= extras, extras


# Words that follow "mcred " in prose, not a command: the lab's names in certificates, a title.
_PROSE = {"lab", "at", "test", "simulated", "repository", "neither", "runs", "adds", "import", "command",
          "issuer", "drill-"}


def _unknown_commands(text, tree):
    """The ``mcred WORD [WORD [WORD]]`` mentions in ``text`` that name no command: each word a
    command or group (``a|b``: each of them; a word after a group must be one of its commands,
    or a top-level one, as in `mcred present|phone pcsc|wallet respond`)."""
    import re

    word = r"[a-z][a-z0-9_-]*(?:\|[a-z][a-z0-9_-]*)*"
    bad = []
    for m in re.finditer(rf"\bmcred ({word})(?: ({word}))?(?: ({word}))?", text):
        first = m.group(1).split("|")
        if len(first) == 1 and first[0] in _PROSE:
            continue
        words = [w for w in m.groups()[1:] if w]
        for node in (tree.get(name) for name in first):
            if node is None:
                bad.append(m.group(0))
                break
            rest, sub = list(words), node
            while isinstance(sub, dict) and rest:  # a group: the next word is its command
                nxt = rest.pop(0).split("|")
                if not all(n in sub or n in tree for n in nxt) or not any(n in sub for n in nxt):
                    bad.append(m.group(0))
                    break
                sub = sub.get(nxt[0]) if len(nxt) == 1 else None
    return bad


def test_every_command_named_in_help_and_messages_exists():
    """`mcred phone create` (the command is `mcred phone new`) was in provision's help and
    error: every `mcred ...` a help text, a string in the source (errors, hints) or the
    README's walk-through names must be a command of the app; and no help text refers to the
    project's tracker."""
    import ast
    import re
    from pathlib import Path

    def tree(command):
        subs = getattr(command, "commands", None)
        return {n: tree(c) for n, c in subs.items()} if subs else True

    import typer.main

    root = tree(typer.main.get_command(app))
    bad = []
    for path, command in _commands():
        for text in _help_texts(command):
            bad += [(" ".join(path), u) for u in _unknown_commands(text, root)]
            if re.search(r"\bissue \d", text):
                bad.append((" ".join(path), "tracker reference: " + text[:80]))
    base = Path(__file__).resolve().parents[1]
    for package in ("mcred", "issuer", "tsm", "reader", "wallet_sim", "protocols", "blelink", "hsm"):
        for source in sorted((base / package).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    bad += [(str(source.relative_to(base)), u) for u in _unknown_commands(node.value, root)]
    for doc in _docs():
        bad += [(doc.name, u) for u in _unknown_commands(doc.read_text(encoding="utf-8"), root)]
    assert not bad, bad


def _docs():
    """The README and the specs: what users build on."""
    from pathlib import Path

    base = Path(__file__).resolve().parents[1]
    return [base / "README.md", *sorted((base / "specs").glob("*.md"))]


def _doc_snippets(text):
    """(line, text) of every code-block line and every backtick span (one wrapped over lines
    joined) of a markdown text."""
    import re

    out = []
    for m in re.finditer(r"```[^\n]*\n(.*?)```", text, re.S):
        first = text[:m.start()].count("\n") + 2
        out += [(first + i, line) for i, line in enumerate(m.group(1).splitlines())]
    prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out += [(prose[:m.start()].count("\n") + 1, m.group(1).replace("\n", " "))
            for m in re.finditer(r"`([^`]+)`", prose)]
    return out


def test_every_option_a_doc_gives_a_command_is_one_of_its_options():
    """specs/presentation.md told users to hold a credential with `mcred revoke --hold`, an
    option revoke never had (it is `--reason certificateHold`): in the README and the specs,
    each `--option` written after `mcred COMMAND` (up to `;`, `#`, `&`, `(` or `, `) must be
    one of that command's options or the app's own."""
    import re

    import typer.main

    root = typer.main.get_command(app)

    def options(command):
        return {o for p in command.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}

    seen, bad = 0, []
    for doc in _docs():
        for line, snippet in _doc_snippets(doc.read_text(encoding="utf-8")):
            for part in re.split(r"[;#&(]|, (?!-)", snippet):
                m = re.search(r"\bmcred((?: --trace)?(?: [a-z][\w|-]*)+)(.*)", part)
                if not m:
                    continue
                command, path = root, []
                for w in (w for w in m.group(1).split() if w != "--trace"):
                    subs = getattr(command, "commands", None) or {}
                    if w not in subs:
                        break
                    command, path = subs[w], [*path, w]
                if not path or getattr(command, "commands", None):
                    continue
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(1) + m.group(2)):
                    seen += 1
                    if option not in options(command) | options(root) | {"--help"}:
                        bad.append(f"{doc.name}:{line}: mcred {' '.join(path)} {option}")
    assert seen > 200, seen
    assert not bad, bad


def test_output_that_is_not_a_terminal_is_not_wrapped_unless_columns_says(monkeypatch):
    """rich wraps and cuts at 80 columns when its output is not a terminal: ids, job ids in
    hints, URLs and QR codes came out broken in pipes and logs. The CLI's consoles do not
    wrap there, keep a terminal's width on a terminal, and take COLUMNS when it is set."""
    import io

    from rich.table import Table

    from mcred.cli.text import UNWRAPPED, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    console = make_console(file=out)
    assert console.width == UNWRAPPED
    hint = "resume it with `mcred provision --resume " + "0123456789abcdef" * 4 + "`, " + "word " * 30
    console.print(hint, highlight=False)
    table = Table("id", "live")
    table.add_row("f" * 120, "3")
    console.print(table)
    lines = out.getvalue().splitlines()
    assert lines[0].rstrip() == hint.rstrip() and any("f" * 120 in line and "3" in line for line in lines)
    assert make_console(file=io.StringIO(), width=50).width == 50
    assert make_console(file=io.StringIO(), force_terminal=True).width < UNWRAPPED  # a terminal's own
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console(file=io.StringIO()).width == 100


def test_the_holder_file_is_described_with_every_field_it_takes():
    """`mcred provision --holder`'s help left out family_name_roman, given_name_roman and
    card_expiry_date, which the holder file takes: the help and the README's paragraph on the
    holder file name every field protocols.cardsub.holder accepts."""
    import re
    from pathlib import Path

    import typer.main

    from protocols.cardsub.holder import FIELDS

    provision = typer.main.get_command(app).commands["provision"]
    help_text = next(p.help for p in provision.params if p.name == "holder")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    paragraph = next(p for p in readme.split("\n\n") if "A holder file is JSON" in p)
    for text in (help_text, paragraph):
        missing = [f for f in FIELDS if not re.search(rf"(?<![\w]){f}(?![\w])", text)]
        assert not missing, (missing, text)
