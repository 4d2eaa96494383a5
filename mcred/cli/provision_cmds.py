"""``mcred provision``, ``mcred handover``, ``mcred drill``: the composition's main commands
(issue 4 item 3, issue 5 item 5, issue 7 items 2-3)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def provision_cmd(
    phone: str = typer.Option(..., "--phone", help="Phone id (`mcred phone create`), or `new` to make one."),
    holder: Path = typer.Option(..., "--holder", help="Holder JSON file (issue 4 item 3 fields)."),
    key_type: str = typer.Option("rsa2048", "--key-type", help="JPKI key type: rsa2048 or p384."),
    mdoc_batch: int = typer.Option(2, "--mdoc-batch", help="mdocs (distinct device keys) to issue, 1..16."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Provision the JPKI signing and user-auth certificates and a batch of mdocs into a phone."""
    import wallet_sim
    from mcred.context import Context
    from mcred.provision import ProvisionError, load_holder_file, provision
    from tsm.errors import TsmError

    if key_type not in ("rsa2048", "p384"):
        raise _fail(f"--key-type {key_type!r} is neither rsa2048 nor p384")
    if not 1 <= mdoc_batch <= 16:
        raise _fail(f"--mdoc-batch {mdoc_batch} is not in 1..16")
    try:
        parsed = load_holder_file(holder)  # refused here, before anything is issued
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    ctx = Context.open()
    if phone == "new":
        phone = wallet_sim.create_phone(ctx.home)
    elif phone not in wallet_sim.list_phones(ctx.home):
        raise _fail(f"no phone {phone!r} under {ctx.home} (make one with `mcred phone create` "
                    "or pass --phone new)")
    try:
        result = provision(ctx, phone, parsed, key_type=key_type, mdoc_batch=mdoc_batch)
    except (ProvisionError, TsmError) as exc:
        raise _fail(f"provisioning {phone}: {exc}", 1) from None
    facts = result.summary()
    values = {"pin": result.pin, "password": result.password, "puk": result.puk}
    shown = {k: values[k] for k in result.generated}
    if as_json:
        typer.echo(json.dumps({**facts, **({"secrets_shown_once": shown} if shown else {})},
                              ensure_ascii=False, indent=2))
        return
    console.print(f"[green]provisioned[/green] phone [bold]{result.phone_id}[/bold] "
                  f"(holder {result.holder_id}, job {result.job_id}) in {result.seconds:.2f} s")
    for slot in ("sign", "auth"):
        c = facts[f"{slot}_certificate"]
        console.print(f"  {slot} certificate serial {c['serial']} until {c['not_after']}",
                      highlight=False)
    console.print(f"  mdocs: {facts['mdocs']}")
    if shown:
        console.print("[yellow]Secrets (shown once, not stored anywhere in clear):[/yellow]")
        labels = {"pin": "user-auth PIN   ", "password": "signing password", "puk": "PUK             "}
        for k, v in shown.items():
            console.print(f"  {labels[k]} {v}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("provision")(provision_cmd)
