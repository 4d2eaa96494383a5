"""``mcred ble radio``: a virtual Bluetooth LE radio that phones and readers in other processes
share (``mcred phone ble --hci``, ``mcred reader ble --hci``)."""

from __future__ import annotations

import json
import signal
import sys

import typer


def _stop(*_: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    ble = typer.Typer(help="Bluetooth Low Energy: the virtual radio for presentations over BLE.",
                      no_args_is_help=True)
    app.add_typer(ble, name="ble")

    @ble.command("radio")
    def radio(port: int = typer.Option(9100, "--port", min=1, max=65535, help="The first TCP port."),
              controllers: int = typer.Option(2, "--controllers", min=2, max=32,
                                              help="How many Bluetooth controllers (one per phone or reader)."),
              host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on."),
              as_json: bool = typer.Option(False, "--json", help="Print the HCI transports as one JSON line "
                                                                 "once listening.")) -> None:
        """Run a virtual radio: CONTROLLERS Bluetooth controllers on one simulated link, each
        an HCI transport on TCP (PORT, PORT+1, ...) for one process at a time, which opens it
        as tcp-client:HOST:PORT. Advertising, connections and GATT traffic between them are
        bumble's link-layer simulation. Stop with Ctrl-C."""
        import blelink
        from mcred.cli.text import fail
        from mcred.present_ble import run_radio

        try:
            blelink.require()
        except blelink.LinkError as exc:
            raise fail(str(exc), as_json) from None
        if port + controllers - 1 > 65535:
            raise fail("--port + --controllers runs past port 65535", as_json)
        ports = list(range(port, port + controllers))
        transports = [f"tcp-client:{host}:{p}" for p in ports]

        def ready() -> None:
            if as_json:
                typer.echo(json.dumps({"hci": transports}), nl=True)
            else:
                typer.echo("virtual BLE radio up; give each phone or reader one of:")
                for t in transports:
                    typer.echo(f"  --hci {t}")
            sys.stdout.flush()

        signal.signal(signal.SIGTERM, _stop)
        try:
            run_radio(ports, host, on_ready=ready)
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            raise fail(str(exc), as_json) from None
