"""``mcred provision``, ``mcred handover``, ``mcred drill``: the composition's main commands
(issue 4 item 3, issue 5 item 5, issue 7 items 2-3)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mcred.cli.ota_cli import (
    CONNECT_TIMEOUT,
    LISTEN,
    OVER_THE_AIR,
    PUBLIC_URL,
    SESSION_ID,
    SSL_CERTFILE,
    SSL_KEYFILE,
    over_the_air_options,
)
from mcred.cli.phone_cmds import tsm_tracing
from mcred.cli.state import OPTIONS, cli_actor, out_path
from mcred.cli.text import make_console, secret_lines

console = make_console()
err = make_console(stderr=True)


def _quarantine_hint(exc: Exception, phone: str | None) -> str | None:
    """For the errors that quarantine an SE (or meet a quarantined one): what the operator
    can do, once the cause is known; None for any other error."""
    from tsm.errors import QUARANTINE_ERRORS

    if not isinstance(exc, QUARANTINE_ERRORS):
        return None
    who = phone or "ID"
    return (f"the SE is quarantined: once investigated, `mcred tsm clear-quarantine --phone {who} "
            "--reason TEXT` accepts it as it is now (`mcred tsm ses` lists the quarantined)")


def _hinted(text: str, *hints: str | None) -> str:
    """``text`` with the hints that apply, in parentheses (none: ``text`` alone)."""
    given = [h for h in hints if h]
    return f"{text} ({'; '.join(given)})" if given else text


def _go_on(job_id: str, over_the_air: bool) -> str:
    """How to go on with the provisioning job that stopped: resume it, or give it up (over
    the air when it ran so)."""
    again = " --over-the-air" if over_the_air else ""
    return (f"resume it with `mcred provision --resume {job_id}{again}`, or give it up with "
            f"`mcred tsm abandon {job_id}{again} --reason TEXT`")


def _check_key_type(key_type: str, as_json: bool = False) -> None:
    from mcred.provision import KEY_TYPES

    if key_type not in KEY_TYPES:
        raise _fail(f"--key-type {key_type!r} is neither rsa2048 nor p384", as_json=as_json)


def _fail(message: str, code: int = 2, as_json: bool = False) -> typer.Exit:
    """``error: message`` on stderr, or with ``--json`` ``{"error": message}`` on stdout
    (:func:`mcred.cli.text.fail`)."""
    from mcred.cli.text import fail

    return fail(message, as_json, code)


def provision_cmd(
    phone: str = typer.Option(None, "--phone", help="Phone id (`mcred phone new`), or `new` to make one."),
    holder: Path = typer.Option(None, "--holder", help="Holder JSON file: family_name, given_name, family_name_kana, given_name_kana, birth_date (YYYY-MM-DD), sex (ISO/IEC 5218), address, prefecture, municipality; optionally portrait (JPEG path), family_name_roman and given_name_roman, card_expiry_date (YYYY-MM-DD), pin, password, puk (these three generated and shown once otherwise). The same person as a registered holder (the same names, kana, birth date, sex and address) is that holder: a second phone is a handover (`mcred handover`)."),
    holder_id: str = typer.Option(None, "--holder-id", help="A holder already registered, none of whose "
                                  "phones has live credentials (after `mcred tsm abandon`), instead of --holder."),
    key_type: str = typer.Option("rsa2048", "--key-type", help="JPKI key type: rsa2048 or p384."),
    mdoc_batch: int = typer.Option(2, "--mdoc-batch", help="mdocs (distinct device keys) to issue, 1..16."),
    resume_id: str = typer.Option(None, "--resume", help="Finish an interrupted provisioning job "
                                  "(its id is in the error that stopped it) instead of starting one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    over_the_air: bool = OVER_THE_AIR,
    listen: str = LISTEN,
    public_url: str = PUBLIC_URL,
    session_id: str = SESSION_ID,
    ssl_certfile: Path = SSL_CERTFILE,
    ssl_keyfile: Path = SSL_KEYFILE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Provision the JPKI signing and user-auth certificates and a batch of mdocs into a phone
    (no signing certificate for a holder under 15: `mcred jpki issue-sign` once they are 15)."""
    import wallet_sim
    from mcred.context import Context
    from mcred.provision import (
        ProvisionError,
        ProvisionRefused,
        check_holder_for_new_phone,
        load_holder_file,
        provision,
        resume,
        unfinished_job,
    )
    from protocols import cardsub
    from tsm.errors import JobError, MasterKeyError, TsmError

    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    if resume_id is not None:
        if phone is not None or holder is not None or holder_id is not None:
            raise _fail("--resume takes no --phone, --holder or --holder-id: the job knows its phone and holder", as_json=as_json)
        ctx = Context.open()
        try:
            if ota is not None:
                from tsm.jobs import read_job

                try:
                    se_id = read_job(ctx.engine, resume_id).se_id
                except JobError as exc:
                    raise _fail(f"job {resume_id}: {exc}", as_json=as_json) from None
                result = ota.run(se_id, lambda transmit: resume(ctx, resume_id,
                                                                **tsm_tracing(ctx.home, se_id, transmit)))
            else:
                from tsm.jobs import read_job

                se_id = read_job(ctx.engine, resume_id).se_id
                if se_id not in wallet_sim.list_phones(ctx.home):
                    raise _fail(f"job {resume_id}: its phone {se_id} is not in this data directory ({ctx.home}): "
                                f"a phone that runs elsewhere is reached over the air, "
                                f"`mcred provision --resume {resume_id} --over-the-air`", as_json=as_json)
                result = resume(ctx, resume_id, **tsm_tracing(ctx.home, se_id))
        except MasterKeyError:
            raise
        except JobError as exc:
            raise _fail(f"job {resume_id}: {exc}", as_json=as_json) from None
        except wallet_sim.SeError as exc:  # its phone's SE image cannot be read: nothing was sent
            raise _fail(f"job {resume_id}: {exc}", as_json=as_json) from None
        except (ProvisionError, TsmError) as exc:
            raise _fail(_hinted(f"resuming job {resume_id}: {exc}",
                                f"once the cause is gone, {_go_on(resume_id, ota is not None)}",
                                _quarantine_hint(exc, None)), 1, as_json=as_json) from None
        _show(result, as_json)
        return
    if phone is None or (holder is None) == (holder_id is None):
        raise _fail("give --phone and one of --holder or --holder-id (or --resume JOB to finish an "
                    "interrupted job)", as_json=as_json)
    _check_key_type(key_type, as_json)
    if not 1 <= mdoc_batch <= 16:
        raise _fail(f"--mdoc-batch {mdoc_batch} is not in 1..16", as_json=as_json)
    ctx: Context | None = None
    try:
        if holder is not None:
            parsed: cardsub.Holder | str = load_holder_file(holder)  # refused before anything is issued
        else:
            ctx = Context.open()
            check_holder_for_new_phone(ctx, holder_id, phone)
            parsed = holder_id
    except ProvisionError as exc:
        raise _fail(str(exc), as_json=as_json) from None
    ctx = ctx or Context.open()
    if ota is not None:
        if phone == "new":
            raise _fail("--phone new makes a phone here; over the air the phone is made where it runs "
                        "(`mcred phone new` there), and its id given", as_json=as_json)
    elif phone == "new":
        phone = ctx.new_phone()
    elif phone not in wallet_sim.list_phones(ctx.home):
        raise _fail(f"no phone {phone!r} under {ctx.home} (make one with `mcred phone new` "
                    "or pass --phone new)", as_json=as_json)
    try:
        if ota is not None:
            result = ota.run(phone, lambda transmit: provision(
                ctx, phone, parsed, key_type=key_type, mdoc_batch=mdoc_batch, alone=holder_id is not None,
                actor=cli_actor(), **tsm_tracing(ctx.home, phone, transmit)))
        else:
            result = provision(ctx, phone, parsed, key_type=key_type, mdoc_batch=mdoc_batch,
                               alone=holder_id is not None, actor=cli_actor(), **tsm_tracing(ctx.home, phone))
    except MasterKeyError:
        raise  # the installation's key, not this phone: mcred.cli.main.run says so, exit 2
    except KeyboardInterrupt:  # Ctrl-C: the job is recorded as interrupted; say which and how on
        job = unfinished_job(ctx, phone)
        raise _fail("interrupted" + (f": job {job.id} stopped before step {job.current_step}; "
                                     f"{_go_on(job.id, ota is not None)}" if job else ""), 130, as_json=as_json) from None
    except wallet_sim.SeError as exc:  # its SE image cannot be read: refused before anything is registered
        raise _fail(f"provisioning {phone}: {exc}", as_json=as_json) from None
    except ProvisionRefused as exc:  # before anything was done: the phone another holder's, ...
        raise _fail(f"provisioning {phone}: {exc}", as_json=as_json) from None
    except ProvisionError as exc:
        raise _fail(f"provisioning {phone}: {exc}", 1, as_json=as_json) from None
    except TsmError as exc:
        job = unfinished_job(ctx, phone)
        text = f"provisioning {phone}: {exc}"
        if job is not None:
            text = _hinted(text, f"job {job.id} stopped: {_go_on(job.id, ota is not None)}",
                           _quarantine_hint(exc, phone))
        raise _fail(text, 1, as_json=as_json) from None
    _show(result, as_json)


def _show(result, as_json: bool) -> None:  # noqa: ANN001 - mcred.provision.ProvisionResult
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
        if c is None:  # a holder under 15: none issued, the SE's slot empty, no password
            console.print(f"  no signing certificate: {facts.get('sign_withheld') or 'not issued'}",
                          highlight=False)
            continue
        console.print(f"  {slot} certificate serial {c['serial']} until {c['not_after']}",
                      highlight=False)
    console.print(f"  mdocs: {facts['mdocs']}")
    _show_secrets(result, console)


def _show_secrets(result, out) -> None:  # noqa: ANN001 - mcred.provision.ProvisionResult, a rich Console
    """The secrets provisioning generated (none given), shown once on ``out``."""
    values = {"pin": result.pin, "password": result.password, "puk": result.puk}
    shown = {k: values[k] for k in result.generated}
    if shown:
        out.print("[yellow]Secrets (shown once, not stored anywhere in clear):[/yellow]")
        for line in secret_lines(shown):
            out.print(f"  {line}", highlight=False)


def handover_cmd(
    phone: str = typer.Option(..., "--phone", help="The old phone."),
    to: str = typer.Option(..., "--to", help="The new phone (`new` to make one)."),
    key_type: str = typer.Option("rsa2048", "--key-type", help="rsa2048 or p384."),
    mdoc_batch: int = typer.Option(2, "--mdoc-batch", min=1, max=16,
                                   help="mdocs (distinct device keys) the new phone gets, 1..16."),
    resume_id: str = typer.Option(None, "--resume", help="Resume the handover with this id."),
    as_json: bool = typer.Option(False, "--json"),
    over_the_air: bool = OVER_THE_AIR,
    listen: str = LISTEN,
    public_url: str = PUBLIC_URL,
    session_id: str = SESSION_ID,
    ssl_certfile: Path = SSL_CERTFILE,
    ssl_keyfile: Path = SSL_KEYFILE,
    connect_timeout: float = CONNECT_TIMEOUT,
    wipe_over_the_air: bool = typer.Option(False, "--wipe-over-the-air", help="With --over-the-air: "
                                           "the old phone is at hand too (the holder brought both to the "
                                           "shop): its SE is wiped through its own Local Agent, in a second "
                                           "session."),
) -> None:
    """機種変更: move a holder's credentials from --phone to --to (specs/handover.md). With
    --over-the-air the new phone is provisioned through its GP SERAM Local Agent, where the
    holder has it; the old one is revoked, and wiped when it is in this data directory or,
    with --wipe-over-the-air, through its own agent."""
    import wallet_sim
    from issuer import handover as wf
    from issuer.db import Phone
    from mcred.context import Context
    from mcred.handover_actions import HandoverActions, mdoc_refusal, release_secrets

    _check_key_type(key_type, as_json)  # the workflow failed on it at its provisioning step
    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    if wipe_over_the_air and ota is None:
        raise _fail("--wipe-over-the-air goes with --over-the-air", as_json=as_json)
    ctx = Context.open()
    with ctx.sessions() as s:
        old = s.get(Phone, phone)
        holder_id = old.holder_id if old else None
        if resume_id is not None and s.get(wf.Handover, resume_id) is None:
            raise _fail(f"--resume {resume_id!r}: no such handover (a failed handover prints the id to resume)", as_json=as_json)
    if holder_id is None:
        raise _fail(f"phone {phone!r} carries no holder's credentials", as_json=as_json)
    if ota is not None:
        if to == "new":
            raise _fail("--to new makes a phone here; over the air the new phone is made where it runs "
                        "(`mcred phone new` there), and its id given", as_json=as_json)
    elif to == "new":  # only once the handover can start: a refusal leaves no phone behind
        to = ctx.new_phone()
    if ota is None and to not in wallet_sim.list_phones(ctx.home):
        raise _fail(f"no phone {to!r} under {ctx.home}", as_json=as_json)
    # the new phone's generated secrets stay sealed in its job until shown below, so a run
    # that stops before it can show them (a later step failed, the process killed) leaves
    # them to --resume
    actions = HandoverActions(ctx, key_type=key_type, mdoc_batch=mdoc_batch, hold_secrets=True)
    try:
        hid = resume_id if resume_id is not None else wf.create(
            ctx.sessions, kind="model_change", holder_id=holder_id, old_phone_id=phone, new_phone_id=to,
            actor=cli_actor(), mdoc_refusal=mdoc_refusal(ctx), jpki_key_type=key_type)
    except wf.WorkflowError as exc:  # e.g. --to another holder's phone
        raise _fail(str(exc), as_json=as_json) from None
    runner = actions.runner(cli_actor())

    def run(*transmits):  # noqa: ANN002, ANN202 - the new phone's (and the old one's), over the air
        actions.reach.update(zip((to, phone), transmits, strict=False))  # none, the new, or both
        for pid in (to, phone):  # --trace: each phone's wire pairs, and the TSM's plain ones
            if OPTIONS.trace and (pid in actions.reach or pid in wallet_sim.list_phones(ctx.home)):
                wiring = tsm_tracing(ctx.home, pid, actions.reach.get(pid))
                actions.reach[pid], actions.trace = wiring["transmit"], wiring["trace"]
        return runner.run(hid)

    try:  # held by this run from before the phones' agents are awaited to its end
        with runner.holding(hid):
            h = run() if ota is None else ota.run_all([to, phone] if wipe_over_the_air else [to], run,
                                                      what="handover")
    except wf.WorkflowBusy as exc:  # another run holds it: refused before anything, its secrets its own
        raise _fail(str(exc), as_json=as_json) from None
    except wf.WorkflowError as exc:
        shown = actions.new_phone_secrets(hid, to)
        message = f"{exc} (resume with --resume {hid}" + (" --over-the-air" if ota else "") + ")"
        if as_json:  # one document: the error, and the secrets it cannot show later
            typer.echo(json.dumps({"error": message, "handover": hid,
                                   **({"secrets_shown_once": shown} if shown else {})}, ensure_ascii=False))
        elif shown:  # the new phone was provisioned before the step that failed: shown now, once
            err.print(f"[yellow]Secrets of {to} (shown once, not stored anywhere in clear):[/yellow]")
            for line in secret_lines(shown):
                err.print(f"  {line}", highlight=False)
        if shown:
            release_secrets(ctx, hid, to, cli_actor())
        raise (typer.Exit(1) if as_json else _fail(message, 1)) from None
    timings = {k: round(v["seconds"], 3) for k, v in h.detail["timings"].items()}
    # this run's, or those an earlier run of it provisioned and stopped before showing
    shown = actions.new_phone_secrets(hid, to)
    if resume_id is not None and not shown and "provision_new" in h.detail["timings"]:
        err.print(f"note: {to} was provisioned by an earlier run of this handover, which showed its secrets; "
                  f"if they were lost, set new ones: `mcred jpki pin reset --phone {to}`", highlight=False)
    from mcred.provision import sign_withheld

    withheld = sign_withheld(ctx, to)
    out = {"handover": hid, "old": phone, "new": to, "state": h.state, "steps": timings,
           "sign_withheld": withheld}
    if as_json:
        typer.echo(json.dumps({**out, **({"secrets_shown_once": shown} if shown else {})}, indent=2,
                              ensure_ascii=False))
    else:
        console.print(f"[green]handover {hid}[/green]: {phone} -> {to}: {h.state}")
        for k, v in timings.items():
            console.print(f"  {k:<14} {v:.3f} s")
        if withheld:
            console.print(f"  no signing certificate on {to}: {withheld}", highlight=False)
        if shown:  # named as provision names them
            console.print(f"[yellow]Secrets of {to} (shown once, not stored anywhere in clear):[/yellow]")
            for line in secret_lines(shown):
                console.print(f"  {line}", highlight=False)
    if shown:
        release_secrets(ctx, hid, to, cli_actor())


def drill_cmd(
    scenario: str = typer.Argument(..., help="model_change | resale | lost_found | lost_not_found | stolen | "
                                             "renewal (カードの更新) | cert_renewal (電子証明書の更新) | moved | death | "
                                             "pin_lock | puk_lock | abandoned | ds_compromise | kloc_compromise | "
                                             "iaca_rollover | iaca_compromise | vical_ca_compromise | all"),
    phones: int = typer.Option(1, "--phones", min=1, help="Subject phones, run in parallel workers."),
    report: list[Path] = typer.Option([], "--report", callback=out_path, help="Write the report (.json or .md); repeatable."),
    workers: int = typer.Option(4, "--workers", min=1, help="Parallel workers."),
    ttl: int = typer.Option(2, "--ttl", min=1, max=86_400, help="Status List Token ttl the drill installation "
                            "publishes (s), at most a token's lifetime (one day)."),
    key_type: str = typer.Option("p384", "--key-type", help="rsa2048 or p384."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as --report FILE.json writes it, "
                                 "{\"home\", \"kept\", \"reports\"}, instead of a line a scenario."),
    keep: bool = typer.Option(False, "--keep", help="Keep the fresh temporary installation when every "
                              "scenario passed (one that failed is kept anyway, to look into)."),
) -> None:
    """Run a handover / revocation drill and report step durations and propagation times.
    It runs in a fresh temporary installation, or in $MCRED_HOME when that is set: there
    ds_compromise revokes the installation's document signer, kloc_compromise rotates
    its TSM's KLOC CA, iaca_rollover stages and starts its next mdoc IACA, iaca_compromise
    revokes its current IACA, re-issues every phone under it and destroys the IACA's key, and
    vical_ca_compromise withdraws its VICAL CA (readers of its VICAL need the new one,
    /trust/vical-ca.pem) and destroys that CA's key, as the drills do to their own."""
    import tempfile

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mcred.context import Context
    from mcred.drills import SCENARIOS, Env, render_markdown, run_drill

    names = list(SCENARIOS) if scenario == "all" else [scenario]
    if any(n not in SCENARIOS for n in names):
        raise _fail(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}, all", as_json=as_json)
    _check_key_type(key_type, as_json)  # each phone's drill failed on it, and the run said FAILED
    for p in report:
        if p.suffix.lower() not in (".json", ".md", ".markdown"):
            raise _fail(f"--report {p}: the extension must be .json or .md", as_json=as_json)
    import os

    temporary = not os.environ.get("MCRED_HOME")
    home = Path(tempfile.mkdtemp(prefix="mcred-drill-")) if temporary else Path(os.environ["MCRED_HOME"])
    ctx = Context.open(home)
    env = Env(ctx, ttl=ttl, key_type=key_type)
    reports = []
    if err.is_terminal:  # a progress bar per scenario
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as progress:
            for name in names:
                task = progress.add_task(name, total=phones)
                reports.append(run_drill(ctx, name, phones=phones, workers=workers, env=env,
                                         progress=lambda n, t=task: progress.advance(t, n)))
    else:  # a CI log, a pipe: no bar is drawn there, so a line as each scenario starts and ends
        for i, name in enumerate(names, 1):
            err.print(f"drill {i}/{len(names)} {name}: started, {phones} phone(s)", highlight=False)
            r = run_drill(ctx, name, phones=phones, workers=workers, env=env)
            reports.append(r)
            err.print(f"drill {i}/{len(names)} {name}: {'PASSED' if r.passed else 'FAILED'} in {r.seconds:.2f} s",
                      highlight=False)
    # a fresh temporary installation goes once every scenario passed (a drill of 50 phones
    # leaves some 80 MB), unless --keep; one that failed stays, to look into
    kept = not temporary or keep or not all(r.passed for r in reports)
    if not kept:
        import shutil

        env.close()
        ctx.engine.dispose()
        shutil.rmtree(home, ignore_errors=True)
    document = {"home": str(home), "kept": kept, "reports": [r.to_json() for r in reports]}
    if as_json:
        typer.echo(json.dumps(document, ensure_ascii=False))
    for r in [] if as_json else reports:
        prop = r.propagation()
        rd, oc, wa, se = (prop[who]["max"] if prop[who] else None for who in ("reader", "ocsp", "watch", "se"))
        mark = "[green]PASSED[/green]" if r.passed else "[red]FAILED[/red]"
        console.print(f"{r.scenario:<15} {mark} {r.seconds:6.2f} s  max: reader {_sec(rd)} "
                      f"(ttl {r.status_list_ttl_s} s), OCSP {_sec(oc)}, CRL watch {_sec(wa)}"
                      + (f", SEs {_sec(se)}" if se is not None else "")
                      + (f"  {r.error}" if r.error else ""), soft_wrap=True)
    if temporary and not as_json:
        err.print(f"installation {home}: " + ("kept" if kept else "removed (--keep keeps it)"),
                  highlight=False, markup=False, soft_wrap=True)  # a path a terminal copies whole
    for p in report:
        if p.suffix.lower() == ".json":
            p.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
        else:
            p.write_text(render_markdown(reports), encoding="utf-8")
    if not all(r.passed for r in reports):
        raise typer.Exit(1)


def refresh_cmd(
    phone: str = typer.Option(..., "--phone", help="The provisioned phone whose mdocs to refresh."),
    batch: int | None = typer.Option(None, "--batch", help="Slots 0..N-1 to refresh, 1..16 "
                                     "(default: every slot holding a valid mdoc)."),
    keep_keys: bool = typer.Option(False, "--keep-keys", help="Re-sign over the slots' device "
                                   "keys instead of generating new ones in the SE."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    over_the_air: bool = OVER_THE_AIR,
    listen: str = LISTEN,
    public_url: str = PUBLIC_URL,
    session_id: str = SESSION_ID,
    ssl_certfile: Path = SSL_CERTFILE,
    ssl_keyfile: Path = SSL_KEYFILE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Issue fresh MSOs into a phone (new validity window, new device keys born in the SE
    unless --keep-keys); the MSOs they replace are revoked as superseded. With
    --over-the-air the phone is reached through its GP SERAM Local Agent, as a TSM renews
    short-lived MSOs in the field."""
    import wallet_sim
    from mcred.context import Context
    from mcred.provision import ProvisionError, refresh_mdocs
    from tsm.errors import MasterKeyError, TsmError

    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    ctx = Context.open()
    if ota is None and phone not in wallet_sim.list_phones(ctx.home):
        raise _fail(f"no phone {phone!r} under {ctx.home}", as_json=as_json)
    try:
        if ota is not None:
            result = ota.run(phone, lambda transmit: refresh_mdocs(
                ctx, phone, batch=batch, rotate=not keep_keys, actor=cli_actor(), **tsm_tracing(ctx.home, phone, transmit)),
                what="refresh")
        else:
            result = refresh_mdocs(ctx, phone, batch=batch, rotate=not keep_keys, actor=cli_actor(), **tsm_tracing(ctx.home, phone))
    except (ProvisionError, wallet_sim.SeError) as exc:  # SeError: its SE image cannot be read
        raise _fail(f"refreshing {phone}: {exc}", as_json=as_json) from None
    except MasterKeyError:
        raise  # the installation's key, not this phone: mcred.cli.main.run says so, exit 2
    except TsmError as exc:
        from tsm.jobs import list_jobs

        left = list_jobs(ctx.engine, phone, kind="refresh-mdoc", unfinished=True)
        again = " --over-the-air" if ota is not None else ""
        raise _fail(_hinted(f"refreshing {phone}: {exc}", (
            f"job {left[-1].id} stopped: the same command again finishes it (`mcred mdoc refresh --phone {phone}"
            f"{again}`), or give it up with `mcred tsm abandon {left[-1].id}{again} --reason TEXT`") if left else "",
            _quarantine_hint(exc, phone)), 1, as_json=as_json) from None
    if as_json:
        typer.echo(json.dumps(result.summary(), ensure_ascii=False, indent=2))
        return
    if result.resumed:
        console.print(f"finished the refresh job {result.job_id} that had stopped (its own batch and keys)",
                      highlight=False)
    console.print(f"[green]refreshed[/green] {len(result.issued)} mdoc(s) on phone "
                  f"[bold]{result.phone_id}[/bold] (job {result.job_id}, {result.rotated} new device "
                  f"key(s)) in {result.seconds:.2f} s", highlight=False)
    for cid, slot, until in result.issued:
        console.print(f"  slot {slot}: {cid} valid until {until}", highlight=False)
    if result.superseded:
        console.print(f"  superseded: {', '.join(result.superseded)}", highlight=False)


def workflows_cmd(
    state: str = typer.Option(None, "--state", help="running, failed (a step raised: resume it) or done."),
    kind: str = typer.Option(None, "--kind", help="model_change, renewal, basic_four_change, lost_hold, found, "
                             "lost_confirmed, resale_report or death."),
    holder: str = typer.Option(None, "--holder", help="Only this holder's."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many (newest first)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Handover and revocation workflows, newest first: kind, state, the last step done, the
    phones, and for one that stopped, its error and the command that resumes it (`--state
    failed`: what is left to finish). Reads the registry only."""
    from issuer import handover as wf
    from mcred.cli.state import open_context
    from mcred.handover_actions import resume_command
    from reader.text import printable

    try:
        rows = wf.workflows(open_context().sessions, state=state, kind=kind, holder_id=holder, limit=limit,
                            offset=offset)
    except wf.WorkflowError as exc:
        raise typer.BadParameter(str(exc)) from None
    out = [{"id": h.id, "kind": h.kind, "state": h.state, "step": h.step, "holder_id": h.holder_id,
            "old_phone_id": h.old_phone_id, "new_phone_id": h.new_phone_id, "reason": h.reason,
            "created_at": h.created_at.isoformat(), "updated_at": h.updated_at.isoformat(),
            "error": (h.detail.get("error") or {}).get("error") if h.state != "done" else None,
            "resume": resume_command(h) if h.state != "done" else None, "runner": wf.lease_of(h)} for h in rows]
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not out:
        typer.echo("no workflow" + (f" {state}" if state else ""))
        return
    for r in out:  # the id whole: it is copied into --resume
        phones = " -> ".join(p for p in (r["old_phone_id"], r["new_phone_id"]) if p)
        typer.echo(f"{r['id']}  {r['kind']} {r['state']} after {r['step']}  holder {r['holder_id']}  {phones}  "
                   f"{r['updated_at'][:19]}Z")
        if r["runner"]:  # a run holds it now: resuming it is refused until that run ends
            typer.echo(f"    being run by {printable(r['runner']['runner'])} since {(r['runner']['since'] or '')[:19]}Z "
                       f"(lease until {r['runner']['until'][:19]}Z)")
        if r["error"]:
            typer.echo(f"    {printable(r['error'][:500])}")
        if r["resume"]:
            typer.echo(f"    resume: {r['resume']}")


def register(app: typer.Typer) -> None:
    from mcred.cli.mdoc_issue_cmds import _group

    _group(app, "mdoc", "ISO 18013-5 mdoc tools.").command("refresh")(refresh_cmd)
    app.command("provision")(provision_cmd)
    app.command("handover")(handover_cmd)
    app.command("workflows")(workflows_cmd)
    app.command("drill")(drill_cmd)


def _sec(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f} s"
