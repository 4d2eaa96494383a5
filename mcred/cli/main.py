"""Entry point of the ``mcred`` console script."""

from __future__ import annotations

import importlib
import inspect
import warnings

import typer
from typer.core import TyperGroup

from mcred.cli.state import OPTIONS
from mcred.cli.text import VERDICT_COMMANDS, error_document, json_requested

# The in-process HTTP client (starlette's TestClient over httpx) warns about its own
# transport at import; it is not the user's concern on the command line.
warnings.filterwarnings("ignore", message=r".*httpx2.*")
# pyHanko and signxml import cryptography's DSA names for their own DSA support, which
# cryptography 51 deprecates at import; mcred neither makes nor accepts DSA signatures, and a
# holder signing a PDF should not read three library warnings about it.
warnings.filterwarnings("ignore", message=r"DSA is deprecated", module=r"(pyhanko|signxml)(\.|$)")


def command_path(root, args: list[str]) -> tuple[str, ...]:  # noqa: ANN001 - the root click group
    """The names of the (sub)commands ``args`` reach from ``root``: ``("jpki", "verify")``."""
    path: list[str] = []
    command = root
    for arg in args:
        commands = getattr(command, "commands", None)  # a group (typer vendors its own click)
        if not commands or arg == "--":
            break
        if arg in commands:
            path.append(arg)
            command = commands[arg]
        elif not arg.startswith("-"):  # the global options (--trace) come before the command
            break
    return tuple(path)


class _Root(TyperGroup):
    """The ``mcred`` group. With ``--json``, a usage error of any command (a value an option
    refuses, a file that is not there, a missing option, an unknown one) is said as one JSON
    document on stdout with exit 2, as the commands' own refusals are
    (:func:`mcred.cli.text.error_document`): a script reads stdout alone. Without it, as typer
    says them (usage and message on stderr)."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001, ANN201 - click's
        wanted = json_requested(list(args))
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as exc:  # click's UsageError, BadParameter ... (typer vendors click)
            if not wanted:
                raise
            raise self._as_json(exc, list(args)) from None
        ctx.meta["mcred.args"] = list(args) if wanted else None
        return ctx

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:
            args = ctx.meta.get("mcred.args")
            if args is None:
                raise
            raise self._as_json(exc, args) from None

    def _as_json(self, exc: typer.TyperException, args: list[str]) -> typer.Exit:
        verdict = command_path(self, args) in VERDICT_COMMANDS
        typer.echo(error_document(exc.format_message(), verdict=verdict))
        return typer.Exit(exc.exit_code)


app = typer.Typer(
    cls=_Root,
    name="mcred",
    help="Provision My Number Card functions onto simulated phones, present and verify them, run revocation drills.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        import cryptography

        try:
            mine = version("mcred")
        except PackageNotFoundError:  # pragma: no cover - run from a checkout without install
            mine = "unknown (not installed)"
        typer.echo(f"mcred {mine} (cryptography {cryptography.__version__}, cbor2 {version('cbor2')})")
        raise typer.Exit(0)


@app.callback()
def _main(
    trace: bool = typer.Option(False, "--trace", help="Print every APDU pair (plain and wrapped), like `gp -d`."),
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit."),
) -> None:
    OPTIONS.trace = trace


# Each area registers its commands; a module absent from this list has nothing on the CLI.
_AREAS = [
    "mcred.cli.mdoc_cmds",
    "mcred.cli.demo_cmds",
    "mcred.cli.export_cmds",
    "mcred.cli.phone_cmds",
    "mcred.cli.mdoc_issue_cmds",
    "mcred.cli.jpki_cmds",
    "mcred.cli.provision_cmds",
    "mcred.cli.token_cmds",
    "mcred.cli.tsm_cmds",
    "mcred.cli.holder_cmds",
    "mcred.cli.present_cmds",
    "mcred.cli.ble_cmds",
    "mcred.cli.tsa_cmds",
    "mcred.cli.housekeeping_cmds",
]

for _name in _AREAS:
    importlib.import_module(_name).register(app)


def _one_line_summaries(typer_app: typer.Typer) -> None:
    """Join the line breaks of each command's first help paragraph (the summary its group's
    listing shows): typer's rich mode keeps a docstring's source line breaks there, which
    printed summaries broken in the middle of a sentence. The paragraphs after it keep theirs."""
    for info in typer_app.registered_commands:
        text = info.help or inspect.getdoc(info.callback) or ""
        first, sep, rest = text.partition("\n\n")
        if "\n" in first:
            info.help = " ".join(first.split()) + sep + rest
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _one_line_summaries(group.typer_instance)


_one_line_summaries(app)


def _help_as_text(typer_app: typer.Typer) -> None:
    """Escape rich markup in every help text (commands, groups, options, arguments): typer's
    rich mode reads help as markup, which ate the extras of install hints (``pip install
    'mcred[pdf]'`` printed as ``'mcred'``). mcred's help texts use no markup; brackets in them
    are text. Each text is escaped once, however many commands share its option."""
    from rich.markup import escape
    from typer.main import solve_typer_info_help
    from typer.models import ParameterInfo

    seen: set[int] = set()

    def parameters(callback) -> None:  # noqa: ANN001 - a command's or a group's function
        if not callable(callback):
            return
        for param in inspect.signature(callback).parameters.values():
            info = param.default
            if isinstance(info, ParameterInfo) and isinstance(info.help, str) and id(info) not in seen:
                seen.add(id(info))
                info.help = escape(info.help)

    def walk(sub: typer.Typer) -> None:
        if sub.registered_callback is not None:
            parameters(sub.registered_callback.callback)
        for info in sub.registered_commands:
            text = info.help or inspect.getdoc(info.callback) or ""
            if id(info) not in seen:
                seen.add(id(info))
                info.help = escape(text)
            parameters(info.callback)
        for group in sub.registered_groups:
            if id(group) not in seen:
                seen.add(id(group))
                group.help = escape(solve_typer_info_help(group))
            parameters(group.callback)
            if group.typer_instance is not None:
                walk(group.typer_instance)

    if typer_app.rich_markup_mode == "rich":  # plain click help (no rich) shows text as it is
        typer_app.info.help = escape(solve_typer_info_help(typer_app.info))
        walk(typer_app)


_help_as_text(app)


def run() -> None:
    import sys

    from mcred.fatal import unusable_exits

    args = sys.argv[1:]

    def as_json(message: str) -> str:  # with --json, the error as the command's own refusals say it
        return error_document(message, verdict=command_path(typer.main.get_command(app), args) in VERDICT_COMMANDS)

    with unusable_exits(as_json=as_json if json_requested(args) else None):
        app()


if __name__ == "__main__":
    run()
