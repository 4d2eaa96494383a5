"""``mcred tsm``: the SP-TSM's own keys, its jobs and its record of each SE."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

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
from mcred.cli.state import cli_actor
from mcred.cli.text import fail, make_console

tsm_app = typer.Typer(help="The SP-TSM: its master key (SCP03 key diversification, sealed job secrets).",
                      no_args_is_help=True)
err = make_console(stderr=True)


@tsm_app.command("import-master-key")
def import_master_key(
    remove_file: bool = typer.Option(False, "--remove-file",
                                     help="Delete the key file once the token holds the key."),
    as_json: bool = typer.Option(False, "--json", help="Print {\"key_id\", \"token_label\", \"renamed\", "
                                 "\"file_removed\"}."),
) -> None:
    """Move the installation's file master key into the PKCS#11 token (specs/tsm.md): the
    SEs it diversified keep opening, with the same key_id, and job secrets it sealed keep
    opening. Then set MCRED_TSM_MASTER_KEY=pkcs11. Token settings: MCRED_PKCS11_*."""
    from sqlalchemy import update

    from mcred.context import Context
    from tsm.db import SecureElementRow
    from tsm.errors import MasterKeyError
    from tsm.hsm import HsmMasterKey
    from tsm.keys import FileMasterKey, master_key_path

    ctx = Context.open()
    path = master_key_path(ctx.home)
    if not path.is_file():
        raise fail(f"no file master key at {path}: nothing to import", as_json)
    file_key = FileMasterKey(path)
    try:
        token_key = HsmMasterKey.import_key(bytes.fromhex(path.read_text().strip()))
    except MasterKeyError as exc:
        raise fail(f"TSM master key: {exc}", as_json) from None
    if token_key.key_id != file_key.key_id:  # pragma: no cover - the same key's check value
        raise fail("the token computes another key_id than the file key", as_json, 1)
    # SEs recorded under the name earlier releases gave this key: its name now, which the
    # token computes too
    with ctx.engine.begin() as conn:
        renamed = conn.execute(update(SecureElementRow)
                               .where(SecureElementRow.master_key_id.in_(sorted(file_key.also_known_as)))
                               .values(master_key_id=file_key.key_id)).rowcount
    if remove_file:
        path.unlink()
    if as_json:
        import json

        typer.echo(json.dumps({"key_id": token_key.key_id, "token_label": token_key.token_label, "renamed": renamed,
                               "file_removed": remove_file, "key_file": str(path)}, ensure_ascii=False))
        return
    typer.echo(f"imported: key_id {token_key.key_id} in PKCS#11 token {token_key.token_label!r} "
               f"({renamed} SE record(s) renamed from the earlier key_id); "
               + (f"{path} deleted; " if remove_file else f"delete {path} once switched; ")
               + "now set MCRED_TSM_MASTER_KEY=pkcs11")


@tsm_app.command("oce-ca")
def oce_ca(
    rotate: bool = typer.Option(False, "--rotate", help="Replace the CA first (its key leaked, or it is "
                                "due): a new CA certifies this TSM's key, the old chain is kept for SEs that "
                                "still name it, the old CA's key is deleted; then `mcred tsm rotate-kloc "
                                "--all` moves the SEs."),
) -> None:
    """Print the certificate (PEM) of the CA that certifies this TSM as an SCP11a off-card
    entity: what a phone factory elsewhere puts into its SEs (`mcred phone new --kloc
    FILE`) so that they take keys from this TSM (specs/tsm.md, "First contact", "Rotating
    the KLOC CA")."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from mcred.context import ConfigError
    from mcred.home import data_home
    from tsm.oce import OceError, ca_ski, kloc_certificate

    try:
        if rotate:
            from mcred.context import Context
            from mcred.kloc import rotate_ca

            old, new = rotate_ca(Context.open())
            err.print(f"KLOC CA rotated: CA {ca_ski(old).hex()} retired (its key deleted), CA {ca_ski(new).hex()} now certifies "
                      "this TSM (Subject Key Identifiers, as `mcred phone show` lists them). SEs still name the old "
                      "CA: `mcred tsm rotate-kloc --all` moves the ones this TSM reaches; a factory-fresh one "
                      "is moved at its first contact. Give factories elsewhere the certificate below.",
                      highlight=False)
            cert = new
        else:
            cert = kloc_certificate(data_home())
        typer.echo(cert.public_bytes(Encoding.PEM).decode(), nl=False)
    except (OceError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@tsm_app.command("rotate-kloc")
def rotate_kloc(
    phone: list[str] = typer.Option(None, "--phone", help="The phone whose SE to move (repeatable)."),
    all_: bool = typer.Option(False, "--all", help="Every SE the TSM has reached (tsm ses: active), "
                              "whose phone is in this data directory."),
    check: bool = typer.Option(False, "--check", help="Only read which CA each SE names (the SEs a leaked "
                               "CA key still opens); no key is changed. The TSM reaches an SE only in a job, "
                               "so each SE still gets a read-only rotate-kloc job: its authenticated session, "
                               "on record in `mcred tsm jobs` and `mcred tsm audit`."),
    as_json: bool = typer.Option(False, "--json"),
    over_the_air: bool = OVER_THE_AIR,
    listen: str = LISTEN,
    public_url: str = PUBLIC_URL,
    session_id: str = SESSION_ID,
    ssl_certfile: Path = SSL_CERTFILE,
    ssl_keyfile: Path = SSL_KEYFILE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Move SEs to this TSM's current KLOC CA (after `mcred tsm oce-ca --rotate`): each a
    rotate-kloc job that reads the CA the SE names (GET DATA FF33) and, when it is another,
    replaces the SE's CA-KLOC key (PUT KEY KID 10, in the TSM's SCP03 session) and names the
    new CA. From then on the SE refuses SCP11a from the old CA's OCEs. Idempotent: run it
    again after a failure (exit 1); an SE already moved is left as it is. With
    --over-the-air the phones named with --phone are reached through their GP SERAM agents
    (a session each). With --check each job only reads (GET DATA FF33) and changes nothing
    on the SE; the job is recorded all the same, as every session of the TSM with an SE is."""
    import json

    import wallet_sim
    from mcred.cli.phone_cmds import tsm_tracing
    from mcred.context import ConfigError, Context
    from mcred.kloc import check_movable, known_phones, move_se
    from tsm.errors import JobInputError, TsmError
    from wallet_sim import SeError

    if bool(phone) == all_:
        raise fail("give --phone ID (one or more) or --all", as_json)
    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    if ota is not None and all_:
        raise fail("--over-the-air reaches the phones named with --phone, not --all", as_json)
    ctx = Context.open()
    skipped: list[dict[str, str]] = []
    if all_:
        targets, here = [], set(wallet_sim.list_phones(ctx.home))
        for pid, state in known_phones(ctx):
            if state != "active":
                skipped.append({"phone": pid, "why": "never reached (its first contact moves it)" if state == "new"
                                else "quarantined (mcred tsm clear-quarantine first)"})
            elif pid not in here:
                skipped.append({"phone": pid, "why": "not in this data directory"})
            else:
                targets.append(pid)
    else:
        targets = list(dict.fromkeys(phone))
        here = set(wallet_sim.list_phones(ctx.home)) if ota is None else set(targets)
        unknown = [p for p in targets if p not in here]
        if unknown:
            raise fail(f"no phone {', '.join(unknown)} in {ctx.home}: nothing was moved", as_json)
        try:
            for pid in targets:
                check_movable(ctx, pid)
                if ota is None:  # its SE image readable here, before any phone is moved
                    wallet_sim.open_secure_element(pid, ctx.home)
        except (JobInputError, SeError) as exc:
            raise fail(f"{exc}; nothing was moved", as_json) from None
    moves: list[dict] = []
    failed: list[dict[str, str]] = []

    def work(*transmits: object) -> None:
        for pid, transmit in zip(targets, transmits or [None] * len(targets), strict=True):
            try:
                moves.append(move_se(ctx, pid, actor=cli_actor(), check=check,
                                     **tsm_tracing(ctx.home, pid, transmit)).summary())
            except (TsmError, SeError) as exc:  # the job stays resumable: run the command again
                # (SeError: --all met a phone whose SE image cannot be read; the others move)
                failed.append({"phone": pid, "error": str(exc)})
                if ota is not None:  # the phones' agents are told the sessions stopped
                    raise

    try:
        if ota is None:
            work()
        else:
            ota.run_all(targets, work, what="rotate-kloc")
    except (TsmError, SeError):
        pass  # in failed: reported below
    except ConfigError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        typer.echo(json.dumps({"checked" if check else "moved": moves, "failed": failed, "skipped": skipped},
                              indent=2))
    else:
        out = make_console()
        for m in moves:
            what = {"replaced": f"moved from KLOC CA {m['old_ca_ski']} to {m['ca_ski']}",
                    "current": f"already names KLOC CA {m['ca_ski']}",
                    "stale": f"[yellow]names KLOC CA {m['ca_ski']}, not the current one[/yellow]: "
                             "`mcred tsm rotate-kloc` without --check moves it",
                    "none": "its issuer named no OCE (no CA-KLOC key): left as it is"}.get(m["kloc"], m["kloc"])
            out.print(f"{m['phone']}: {what} ({'read-only ' if check else ''}job {m['job']})", highlight=False)
        for f in failed:
            out.print(f"[red]{escape(f['phone'])}: {escape(f['error'])}[/red]", highlight=False)
        for s in skipped:
            out.print(f"[yellow]{escape(s['phone'])}: skipped, {escape(s['why'])}[/yellow]", highlight=False)
    if failed:
        raise typer.Exit(1)


@tsm_app.command("jobs")
def jobs(
    phone: str = typer.Option(None, "--phone", help="Only this phone's jobs."),
    unfinished: bool = typer.Option(False, "--unfinished", help="Only jobs that have not finished "
                                    "(to resume: `mcred provision --resume JOB` for a provisioning)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many (oldest first)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The TSM's jobs, oldest first: kind, state, the step it stopped before, attempts, error.
    Reads the registry only (no key is opened, no SE is touched)."""
    from mcred.cli.text import echo_json_array
    from mcred.context import Context
    from reader.text import printable
    from tsm.jobs import job_lines

    # read a batch at a time and written as read: every job of a large installation, never
    # all of them (nor any job's results) in memory
    rows = ({"id": j.id, "phone": j.se_id, "phone_id": j.se_id, "kind": j.kind, "state": j.state,
             "next_step": j.current_step, "steps_done": j.next_step, "steps": len(j.steps), "attempts": j.attempts,
             "error": j.error, "created_at": j.created_at.isoformat() if j.created_at else None,
             "updated_at": j.updated_at.isoformat() if j.updated_at else None}
            for j in job_lines(Context.open().engine, phone, unfinished=unfinished, limit=limit, offset=offset))
    if as_json:
        echo_json_array(rows, indent=2)
        return
    n = 0
    # one line per job, never cut (ids are to be copied for --resume and abandon), its error
    # on the next
    for r in rows:
        n += 1
        typer.echo(f"{r['id']}  {r['phone']}  {r['kind']} {r['state']} {r['steps_done']}/{r['steps']}"
                   + (f" next {r['next_step']}" if r["next_step"] else "")
                   + (f"  since {r['updated_at'][:19]}Z" if r["updated_at"] else ""))
        if r["error"]:
            typer.echo(f"    {printable(r['error'][:500])}")
    if not n:
        typer.echo(("no unfinished job" if unfinished else "no job") + (f" on {phone}" if phone else ""))


@tsm_app.command("ses")
def ses(as_json: bool = typer.Option(False, "--json")) -> None:
    """The TSM's record of each SE, one line each in the order of their ids: state (new,
    active, or suspect: quarantined after a sequence counter regression or a keyset
    rollback), the keyset it opens sessions with, the master key that diversified it.
    Reads the registry only."""
    from sqlalchemy import select

    from mcred.cli.text import echo_json_array
    from mcred.context import Context
    from tsm.db import SecureElementRow as Se

    def read():  # a batch at a time, each written as read (a rich table of 20,000 SEs took 16 s)
        q = select(Se.se_id, Se.state, Se.kvn, Se.kdd, Se.master_key_id, Se.updated_at).order_by(Se.se_id)
        with Context.open().engine.connect() as conn:
            for r in conn.execute(q.execution_options(yield_per=500)):
                yield {"phone": r.se_id, "phone_id": r.se_id, "state": r.state, "kvn": f"{r.kvn:02X}",
                       "kdd": r.kdd, "master_key_id": r.master_key_id, "updated_at": r.updated_at.isoformat()}

    if as_json:
        echo_json_array(read(), indent=2)
        return
    n = 0
    for r in read():  # the id whole, to be copied for clear-quarantine
        n += 1
        state = typer.style("suspect (quarantined)", fg="red") if r["state"] == "suspect" else r["state"]
        typer.echo(f"{r['phone']}  {state}  keyset {r['kvn']}  master key {r['master_key_id'] or '-'}"
                   f"  updated {r['updated_at'][:19]}Z")
    if not n:
        typer.echo("no SE")


@tsm_app.command("clear-quarantine")
def clear_quarantine(
    phone: str = typer.Option(..., "--phone", help="The quarantined phone (its SE)."),
    reason: str = typer.Option(..., "--reason", help="Why it may be used again (audited)."),
    as_json: bool = typer.Option(False, "--json", help="Print {\"phone\", \"cleared\": true}."),
) -> None:
    """Accept a quarantined SE as it is now (specs/tsm.md): its sequence counter baseline is
    set again by the next session, and after a keyset rollback its record goes back to the
    factory keyset, so that the next job keys the reset card again. Audited
    (quarantine-cleared); the job that stopped can then be resumed."""
    from mcred.context import Context
    from tsm.errors import TsmError
    from tsm.jobs import Tsm

    ctx = Context.open()
    try:
        Tsm(ctx.engine, ctx.master_key, actor=cli_actor()).clear_quarantine(phone, cli_actor(), reason)
    except TsmError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        import json

        typer.echo(json.dumps({"phone": phone, "cleared": True}))
        return
    typer.echo(f"{phone}: quarantine cleared; its next session sets the counter baseline again "
               "(after a keyset rollback, the next job keys it again)")


@tsm_app.command("abandon")
def abandon(
    job: str = typer.Argument(..., help="The job to give up (`mcred tsm jobs --unfinished`)."),
    reason: str = typer.Option(..., "--reason", help="Why it will not finish (audited)."),
    as_json: bool = typer.Option(False, "--json"),
    over_the_air: bool = OVER_THE_AIR,
    listen: str = LISTEN,
    public_url: str = PUBLIC_URL,
    session_id: str = SESSION_ID,
    ssl_certfile: Path = SSL_CERTFILE,
    ssl_keyfile: Path = SSL_KEYFILE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Give up a job that cannot finish (its phone is gone, its SE stays quarantined, the
    holder withdrew): it never runs again, and the credentials issued under it are revoked
    (cessationOfOperation). For a provisioning job the phone's SE is also wiped and the
    phone let go of its holder, so that it can be provisioned again; the holder stays
    registered (`mcred provision --holder-id`). For a certificate renewal (renew-jpki) a
    slot whose new certificate was written keeps it; a slot whose key it replaced without
    writing one has its live certificate revoked and is named to be renewed (`mcred jpki
    renew`, whatever the old expiry). Where the job stopped at a step that may have run, the
    phone's SE is read first (a read-jpki job): a slot still holding its old key and
    certificate, or holding the new ones, keeps them. A first signing certificate
    (issue-sign) is revoked unless the SE holds it with the password the holder gave; then
    `mcred jpki issue-sign` issues one again. Run it again to finish a wipe that failed.
    With --over-the-air the wipe reaches the phone through its GP SERAM Local Agent."""
    import json

    import wallet_sim
    from mcred.cli.phone_cmds import tsm_tracing
    from mcred.context import Context
    from mcred.provision import AbandonSeBusyError
    from mcred.provision import abandon as abandon_job
    from tsm.errors import JobError, TsmError
    from tsm.jobs import read_job

    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    ctx = Context.open()
    try:
        view = read_job(ctx.engine, job)
        if ota is None:
            # --trace shows the wipe of a phone in this data directory (one elsewhere is let go unwiped)
            # (and the read of a JPKI job's slots: renew-jpki, issue-sign)
            here = (view.kind in ("provision", "renew-jpki", "issue-sign")
                    and view.se_id in wallet_sim.list_phones(ctx.home))
            result = abandon_job(ctx, job, reason, actor=cli_actor(), **(tsm_tracing(ctx.home, view.se_id) if here else {}))
        else:
            if view.kind != "provision":
                raise JobError(f"--over-the-air reaches a provisioning's phone to wipe it; job {job} is a "
                               f"{view.kind} job, which wipes nothing")
            result = ota.run(view.se_id, lambda transmit: abandon_job(
                ctx, job, reason, actor=cli_actor(), **tsm_tracing(ctx.home, view.se_id, transmit)), what="abandon")
    except JobError as exc:  # no such job, a finished one, no reason: the command as given
        raise fail(str(exc), as_json) from None
    except AbandonSeBusyError as exc:  # abandoned, its SE to be read: the message says what is left
        raise fail(str(exc), as_json, 1) from None
    except TsmError as exc:  # e.g. another worker holds the SE: try again later
        raise fail(f"{exc} (nothing was changed: run it again)", as_json, 1) from None
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=2))
        return
    out = make_console()
    out.print(f"job {job} ({result.kind} of phone {result.phone_id}) abandoned; "
              + (f"{len(result.revoked)} certificate(s) of the slots it left revoked" if result.kind == "renew-jpki"
                 else f"{len(result.revoked)} credential(s) it issued revoked"), highlight=False)
    for cid, kind in result.revoked:
        out.print(f"  revoked {kind} {cid} (cessationOfOperation)", highlight=False)
    check = result.se_check
    if check is not None and check.error:
        out.print(f"  the SE could not be read ({escape(check.error)}): the slots the job may have changed "
                  f"({', '.join(check.slots)}) are taken as changed", highlight=False)
    elif check is not None:
        for slot, verdict in check.slots.items():
            out.print(f"  the {slot} slot was read (job {check.job}): {verdict} ({_FOUND[verdict]})", highlight=False)
    for slot in result.renewal_needed:  # GENERATE KEY replaced the key; no new certificate was written
        out.print(f"  the {slot} slot holds no usable certificate: renew it with `mcred jpki renew --phone "
                  f"{result.phone_id} --slot {slot}` (taken whatever the old expiry)", highlight=False)
    if result.sign_issue_needed:  # revoked, none in use: the holder's first signing certificate is issued again
        out.print(f"  the phone holds no live signing certificate: issue one again with `mcred jpki issue-sign "
                  f"--phone {result.phone_id}`", highlight=False)
    if result.wiped:
        out.print(f"  SE wiped (job {result.wipe_job})", highlight=False)
    elif result.wipe_error:
        out.print(f"  [yellow]SE not wiped[/yellow]: {escape(result.wipe_error)}", highlight=False)
    if result.released_holder:
        out.print(f"  phone {result.phone_id} let go of holder {result.released_holder}: provision it "
                  f"again with `mcred provision --phone ID --holder-id {result.released_holder}`",
                  highlight=False)
    elif result.kind == "provision" and result.wipe_job and not result.wiped:
        cause = (f"`mcred tsm clear-quarantine --phone {result.phone_id} --reason TEXT` accepts the SE as "
                 "it is now; then" if result.wipe_quarantined else "once the cause is gone,")
        out.print(f"  phone {result.phone_id} stays with its holder until its SE is wiped: {cause} run "
                  f"`mcred tsm abandon {job} --reason TEXT` again", highlight=False)


#: What the read of a slot found, as ``mcred tsm abandon`` says it (mcred.provision.SlotCheck)
_FOUND = {"unchanged": "its certificate from before the job, with its key: it stays valid",
          "written": "the job's new certificate, with its key: it stays valid",
          "password_unset": "the job's certificate with its key, no signing password set: it is revoked",
          "replaced": "a key with no certificate of its own: the slot's live certificate is revoked",
          "unknown": "not read"}


@tsm_app.command("audit")
def audit(
    phone: str = typer.Option(None, "--phone", help="Only this phone's SE."),
    job: str = typer.Option(None, "--job", help="Only this job's records."),
    event: str = typer.Option(None, "--event", help="Only this event: apdu, session-open, session-failed, "
                              "keys-rotated, counter-regression, keyset-rollback, job-created, step-done, "
                              "job-done, job-failed, job-abandoned, quarantine-cleared, ..."),
    limit: int = typer.Option(200, "--limit", min=1, max=100_000, help="The last this many records."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many last ones first (the page before)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The TSM's audit trail, the last records in the order written: SCP03 sessions, every
    command by its header, plain data length and status word (never its data: no key, PIN
    or certificate is in the log), and the jobs' events. What happened to a phone's SE."""
    import json

    from mcred.cli.state import open_context
    from reader.text import printable
    from tsm.audit import recent

    rows = recent(open_context().engine, se_id=phone, job_id=job, event=event, limit=limit, offset=offset)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        command = f" {r['command']} Lc={r['lc']}" if r["command"] else ""
        sw = f" -> {r['sw']}" if r["sw"] else (" -> no answer" if r["event"] == "apdu" else "")
        detail = " ".join(f"{k}={v}" for k, v in r["detail"].items())
        typer.echo(printable(f"{r['at']}  {r['phone_id']}  {r['job'] or '-'} {r['step'] or '-'}  "
                             f"{r['event']}{command}{sw}  {r['what'] or ''}"
                             + (f"  ({detail[:300]})" if detail else "")).rstrip())
    if not rows:
        which = " and ".join(f"{k} {v}" for k, v in (("phone", phone), ("job", job), ("event", event)) if v)
        typer.echo("no audit record" + (f" for {which}" if which else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(tsm_app, name="tsm")
