"""``mcred housekeeping run|tasks``: the issuer's scheduled housekeeping from a command line
(cron, an operator), the tasks ``mcred serve`` runs every ``--housekeeping-interval`` seconds
(mcred/housekeeping.py, specs/revocation.md section 8)."""

from __future__ import annotations

import json
import time

import typer

from mcred.cli.state import cli_actor, open_context

housekeeping_app = typer.Typer(help="The issuer's time-driven work (CRLs, status lists, the VICAL CA's staging, "
                               "signer rollovers, stale jobs) done now, as mcred serve does on a schedule "
                               "(specs/revocation.md section 8).", no_args_is_help=True)


@housekeeping_app.command("run")
def run(only: list[str] = typer.Option(None, "--only", help="Run this task only (again for several; "
                                       "mcred housekeeping tasks lists them). Default: every task."),
        wait: float = typer.Option(60.0, "--wait", min=0, help="Seconds to wait for a run another process "
                                   "(the service, another cron job) is making to end before this one starts."),
        as_json: bool = typer.Option(False, "--json", help="Print {\"ok\", \"tasks\": [{\"task\", \"ok\", "
                                     "\"changed\", \"did\", \"outcome\", \"error\", \"started_at\", "
                                     "\"seconds\"}]}.")) -> None:
    """Run the housekeeping tasks now (for cron, or an operator).

    Each whatever the others do (one that fails is reported and the next runs), one process of
    the installation at a time. Exit 0 when every task ran, 1 when one failed (or another
    process's run did not end within --wait)."""
    from mcred import housekeeping as hk
    from mcred.cli.text import fail
    from mcred.db import try_lock

    try:
        tasks = hk.select_tasks(only or None)
    except hk.UnknownTask as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from None
    ctx = open_context()
    actor = cli_actor()
    deadline = time.monotonic() + wait
    while True:
        with try_lock(ctx.engine, ctx.home, hk.LOCK_NAME) as held:
            if held:
                results = hk.run(ctx, tasks, runner=actor, actor=actor)
                break
        if time.monotonic() >= deadline:
            raise fail(f"another process of this installation is running housekeeping and did not end within "
                       f"{wait:g} s: nothing was run (try again, or --wait longer)", as_json, 1)
        time.sleep(0.2)
    ok = all(r.ok for r in results)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "tasks": [r.to_json() for r in results]}, ensure_ascii=False))
    else:
        width = max(len(r.task) for r in results)
        for r in results:
            typer.echo(f"{'ok' if r.ok else '--'}  {r.task:<{width}}  {r.outcome} ({r.seconds:.2f} s)")
    raise typer.Exit(0 if ok else 1)


@housekeeping_app.command("tasks")
def tasks(as_json: bool = typer.Option(False, "--json", help="Print [{\"task\", \"what\", \"last_run_at\", "
                                       "\"last_ok\", \"last_outcome\", \"last_runner\", \"runs\", "
                                       "\"failures\"}].")) -> None:
    """The housekeeping tasks and the last run of each.

    In the order a run takes them, each with what it does and its last run in this
    installation (by the service's schedule or a command line)."""
    from mcred import housekeeping as hk
    from mcred.cli.text import listing

    last = hk.last_runs(open_context())
    rows = []
    for task in hk.TASKS:
        row = last.get(task.name)
        rows.append({"task": task.name, "what": task.what,
                     "last_run_at": row.last_started_at.isoformat(timespec="seconds") if row is not None else None,
                     "last_ok": row.last_ok if row is not None else None,
                     "last_outcome": row.last_outcome if row is not None else None,
                     "last_runner": row.last_runner if row is not None else None,
                     "runs": row.runs if row is not None else 0, "failures": row.failures if row is not None else 0})
    if as_json:
        listing(rows, {}, True)
        return
    shown = [{**r, "last": "never" if r["last_run_at"] is None else
              f"{r['last_run_at']} {'ok' if r['last_ok'] else 'FAILED'}: {r['last_outcome']}"} for r in rows]
    listing(shown, {"task": "task", "what": "does", "last": "last run"}, False)


def register(app: typer.Typer) -> None:
    app.add_typer(housekeeping_app, name="housekeeping")
