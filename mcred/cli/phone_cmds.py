"""``mcred phone new|list|show|reset``: simulated phones and their secure elements.

``--trace`` (global) is honoured by the TSM's transports, built with
:func:`tracing_transport` below, which every command that talks to an SE uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import typer

import wallet_sim
from mcred.cli.state import OPTIONS
from mcred.home import data_home
from tsm.trace import tracing_transmit


def tracing_transport(transmit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``transmit`` wrapped to print every wire APDU pair to stderr when ``--trace``."""
    if not OPTIONS.trace:
        return transmit
    return tracing_transmit(transmit, lambda line: print(line, file=sys.stderr))


def trace_sink() -> Callable[[str], None] | None:
    """The sink for the TSM's plain APDU pairs under ``--trace`` (else None)."""
    return (lambda line: print(line, file=sys.stderr)) if OPTIONS.trace else None


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    phone = typer.Typer(help="Simulated phones and their GP secure elements.", no_args_is_help=True)
    app.add_typer(phone, name="phone")

    @phone.command("new")
    def new(model: str = typer.Option("mcred-sim-1", "--model", help="Phone model name."),
            as_json: bool = typer.Option(False, "--json", help="Print {\"id\": ...}.")) -> None:
        """Make a phone with a factory-fresh SE (keyset 30 = the GP test key)."""
        pid = wallet_sim.create_phone(data_home(), model=model)
        typer.echo(json.dumps({"id": pid}) if as_json else pid)

    @phone.command("list")
    def list_(as_json: bool = typer.Option(False, "--json")) -> None:
        """The phones in the data directory."""
        ids = wallet_sim.list_phones(data_home())
        if as_json:
            typer.echo(json.dumps(ids))
        else:
            for pid in ids:
                typer.echo(pid)

    @phone.command("show")
    def show(phone_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
        """CPLC, security domains and keysets, applets and life cycles, PIN counters,
        certificates held (public facts only)."""
        try:
            info = wallet_sim.describe(phone_id, data_home())
        except wallet_sim.SeError as exc:
            _fail(str(exc))
        if as_json:
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        _print_tree(info)

    @phone.command("reset")
    def reset(phone_id: str) -> None:
        """Factory reset: wipes the phone's app data; the SE keeps its content."""
        try:
            wallet_sim.factory_reset(phone_id, data_home())
        except wallet_sim.SeError as exc:
            _fail(str(exc))
        typer.echo(f"{phone_id}: app data wiped; the secure element is untouched")


def _print_tree(value: object, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                typer.echo(f"{pad}{k}:")
                _print_tree(v, indent + 1)
            else:
                typer.echo(f"{pad}{k}: {v}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                typer.echo(f"{pad}-")
                _print_tree(item, indent + 1)
            else:
                typer.echo(f"{pad}- {item}")
    else:
        typer.echo(f"{pad}{value}")
