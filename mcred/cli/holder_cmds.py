"""``mcred holder list|show|update|forget``: the issuer's registered holders, their phones and
how many of their credentials are live (what an operator needs to provision a holder again
with ``mcred provision --holder-id``, or to start a handover from the right phone); a change of
their card data (異動) and the erasure of it."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import typer
from rich.markup import escape

from mcred.cli.state import cli_actor
from mcred.cli.text import SECRET_LABELS, fail, make_console

holder_app = typer.Typer(help="Holders in the issuer's registry: their phones and live credentials.",
                         no_args_is_help=True)


def _holders(holder_id: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    from issuer.holders import summaries
    from mcred.cli.state import open_context

    return summaries(open_context().sessions, holder_id, **kwargs)


@holder_app.command("list")
def holder_list(card: str = typer.Option(None, "--card", help="Only the holder of this card number (16 digits)."),
                limit: int = typer.Option(1000, "--limit", min=1, help="At most this many (oldest first)."),
                offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered holder, oldest first, one line each: id, name, phones (a phone let go
    after an abandoned provisioning is no longer listed), live credentials; --json adds the
    card."""
    from issuer.holders import each_summary
    from mcred.cli.state import open_context
    from mcred.cli.text import echo_json_array
    from reader.text import printable

    if card is not None and not re.fullmatch(r"[0-9]{16}", card):
        raise typer.BadParameter(f"{card[:40]!r} is not a card number (16 digits)", param_hint="--card")
    # a batch at a time, each written as read (a rich table of 20,000 holders took 28 s)
    rows = each_summary(open_context().sessions, card_number=card, limit=limit, offset=offset)
    if as_json:
        echo_json_array(rows, indent=2)
        return
    n = 0
    for r in rows:  # the id whole, to be copied (`mcred holder show`, `provision --holder-id`)
        n += 1
        phones = ", ".join(f"{p['id']} ({p['state']})" for p in r["phones"]) or "-"
        typer.echo(printable(f"{r['id']}  {r['name']}  {phones}  {r['live']}"))
    if not n:
        typer.echo("no holder" + (f" with card {card}" if card else ""))


@holder_app.command("example")
def holder_example(
    birth_date: str = typer.Option(None, "--birth-date", help="YYYY-MM-DD in place of the sample's "
                                   "(e.g. a minor's, to see what a child is issued)."),
    roman: bool = typer.Option(False, "--roman", help="Add the optional name in Roman letters."),
) -> None:
    """Print a holder file that `mcred provision --holder FILE.json` accepts (made-up data:
    `mcred holder example > holder.json`); the JPKI secrets are left out, so provisioning
    generates them and shows them once. The fields: specs/card-substitute-doctype.md, "The
    holder record"."""
    from mcred.samples import HOLDER
    from protocols.cardsub import HolderError, parse_holder

    record = dict(HOLDER)
    if birth_date is not None:
        record["birth_date"] = birth_date
    if roman:
        record.update(family_name_roman="SHIKEN", given_name_roman="TARO")
    try:  # the file printed is one provisioning takes, or it is not printed
        parse_holder(record)
    except HolderError as exc:
        raise typer.BadParameter(str(exc), param_hint="--birth-date") from None
    typer.echo(json.dumps(record, ensure_ascii=False, indent=2))


@holder_app.command("show")
def holder_show(holder_id: str = typer.Argument(..., help="The holder's id (`mcred holder list`)."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """One holder: the card-substitute data as registered (no portrait bytes), phones and
    credentials by kind and status, and what an abandoned renewal or issue-sign left to do."""
    rows = _holders(holder_id, with_data=True) if len(holder_id) <= 32 else []
    if not rows:
        raise fail(f"no holder {holder_id[:40]!r} in the issuer's registry (`mcred holder list`)", as_json)
    out = rows[0]
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2, default=str))
        return
    con = make_console()
    con.print(f"[bold]{out['id']}[/bold] {escape(out['name'])}  card {out['card_number']} until "
              f"{out['card_expiry']}", highlight=False)
    for k, v in out["data"].items():
        con.print(f"  {k:<20} {escape(str(v))}", highlight=False)
    from protocols.birthdays import today_in_japan

    since = out.get("signing_certificate_from")
    if since and since > today_in_japan(dt.datetime.now(dt.UTC)).isoformat():
        con.print(f"  no signing certificate: holder under 15 (one may be issued from {since})", highlight=False)
    con.print("  phones: " + (", ".join(f"{p['id']} ({p['state']})" for p in out["phones"]) or "none"),
              highlight=False)
    for k, n in sorted(out["credentials"].items()):
        con.print(f"  {k:<24} {n}", highlight=False)
    for r in out.get("renewal_needed", ()):  # an abandoned renewal left the slot with no usable certificate
        con.print(f"  [yellow]renewal needed[/yellow]: phone {r['phone']}, {r['slot']} certificate (renewal job "
                  f"{r['job']} abandoned): `mcred jpki renew --phone {r['phone']} --slot {r['slot']}`", highlight=False)
    for r in out.get("sign_issue_needed", ()):  # an abandoned issue-sign left the phone with no signing certificate
        con.print(f"  [yellow]signing certificate to issue[/yellow]: phone {r['phone']} (issue-sign job {r['job']} "
                  f"abandoned): `mcred jpki issue-sign --phone {r['phone']}`", highlight=False)


@holder_app.command("forget")
def holder_forget(holder_id: str = typer.Argument(..., help="The holder (mcred holder list)."),
                  reason: str = typer.Option(..., "--reason", help="Why (audited), e.g. the retention period ended."),
                  as_json: bool = typer.Option(False, "--json", help="Print {\"holder\", \"erased\", ...}: "
                                               "erased false when it was already.")) -> None:
    """Erase a holder's personal data once none of their credentials is live and no TSM job
    could issue from it again: the card data and number, and the IssuerSigned of their mdocs
    (portrait included). Their JPKI certificates stay, as the certification authority's
    register that the CRLs and OCSP answer for; their id, phones and credential records stay,
    so the audit trail still reads. Audited (holder.forget). Exit 2 when refused."""
    from issuer.holders import HolderError
    from mcred.cli.state import open_context
    from mcred.provision import ProvisionError, forget_holder

    if not reason.strip():
        raise typer.BadParameter("give the reason (it is audited)", param_hint="--reason")
    try:
        done = forget_holder(open_context(), holder_id, actor=cli_actor(), reason=reason)
    except (HolderError, ProvisionError) as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        typer.echo(json.dumps({"holder": holder_id, "erased": done is not None, **(done or {})}, ensure_ascii=False))
        return
    if done is None:
        typer.echo(f"holder {holder_id}: already erased")
        return
    typer.echo(f"holder {holder_id}: personal data erased; {done['mdoc_bodies_erased']} mdoc(s) dropped, "
               f"{done['certificates_kept']} certificate(s) kept in the CA's register")


def _workflow_refused(exc: Exception, kind: str, holder_id: str, as_json: bool) -> typer.Exit:
    """A refused change (exit 2), or its workflow of ``kind`` stopped (exit 1, with the
    command that resumes it: :func:`mcred.handover_actions.resume_command_for`)."""
    from issuer.handover import StepFailed
    from mcred.handover_actions import resume_command_for

    stopped = isinstance(exc, StepFailed)
    hint = f" (resume: {resume_command_for(kind, exc.handover_id or '...', holder_id=holder_id)})" if stopped else ""
    return fail(f"{exc}{hint}", as_json, 1 if stopped else 2)


def _print_steps(steps: dict[str, float]) -> None:
    for step, seconds in steps.items():
        typer.echo(f"  {step:<14} {seconds:.3f} s")


@holder_app.command("update")
def holder_update(
    holder_id: str = typer.Argument(..., help="The holder (mcred holder list)."),
    reason: str = typer.Option(None, "--reason", help="Why (audited), e.g. 転居届 2026-12-01."),
    family_name: str = typer.Option(None, "--family-name"),
    given_name: str = typer.Option(None, "--given-name"),
    family_name_kana: str = typer.Option(None, "--family-name-kana"),
    given_name_kana: str = typer.Option(None, "--given-name-kana"),
    family_name_roman: str = typer.Option(None, "--family-name-roman"),
    given_name_roman: str = typer.Option(None, "--given-name-roman"),
    address: str = typer.Option(None, "--address"),
    prefecture: str = typer.Option(None, "--prefecture"),
    municipality: str = typer.Option(None, "--municipality"),
    municipality_code: str = typer.Option(None, "--municipality-code", help="The new municipality's "
                                          "6-digit local government code (its CRL partition); dropped on a move "
                                          "that gives none."),
    birth_date: str = typer.Option(None, "--birth-date", help="A correction, YYYY-MM-DD."),
    sex: int = typer.Option(None, "--sex", help="A correction, ISO/IEC 5218 (0, 1, 2, 9)."),
    resume: str = typer.Option(None, "--resume", help="Finish the change whose workflow stopped (its id)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """異動: the holder moved or changed name. The registry takes the new card data; the phone
    carrying their credentials gets a new signing certificate with it (the old one revoked as
    superseded, the key generated anew in the SE) and new mdocs; the user-authentication
    certificate, which carries no basic four data, stays valid. Exit 2 when refused, 1 when
    the workflow stopped (resume it with --resume)."""
    from issuer.handover import WorkflowError
    from issuer.holders import HolderError
    from mcred.cli.state import open_context
    from mcred.handover_actions import change_basic_four

    changes = {k: v for k, v in {
        "family_name": family_name, "given_name": given_name, "family_name_kana": family_name_kana,
        "given_name_kana": given_name_kana, "family_name_roman": family_name_roman,
        "given_name_roman": given_name_roman, "address": address, "prefecture": prefecture,
        "municipality": municipality, "municipality_code": municipality_code,
        "birth_date": birth_date, "sex": sex}.items() if v is not None}
    if resume is None and not changes:
        raise typer.BadParameter("give at least one new value (--address, --family-name, ...)")
    if resume is None and not (reason or "").strip():
        raise typer.BadParameter("give the reason (it is audited)", param_hint="--reason")
    try:
        out = change_basic_four(open_context(), holder_id, changes, reason=reason or "", actor=cli_actor(),
                                resume=resume)
    except (HolderError, WorkflowError) as exc:
        raise _workflow_refused(exc, "basic_four_change", holder_id, as_json) from None
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    if not out["fields"] and out["handover"] is None:
        typer.echo(f"holder {holder_id}: nothing changed")
        return
    if out["fields"]:
        typer.echo(f"holder {holder_id}: {', '.join(out['fields'])} changed")
    if out.get("card_ended"):
        typer.echo(f"phone {out['phone']}: nothing re-issued, everything on it ended with the card: "
                   f"{out['card_ended']}, with the new data")
        return
    if out["phone"] is None:
        typer.echo("no active phone carries their credentials: the next provisioning carries the new data")
        return
    sign = (f"no signing certificate: {out['sign_withheld']}" if out.get("sign_withheld")
            else "signing certificate superseded and re-issued")
    typer.echo(f"phone {out['phone']}: workflow {out['handover']} {out['state']} ({sign}, mdocs re-issued, "
               "user authentication kept)")
    _print_steps(out["steps"])


@holder_app.command("renew-card")
def holder_renew_card(
    holder_id: str = typer.Argument(..., help="The holder (mcred holder list)."),
    reason: str = typer.Option(None, "--reason", help="Why (audited), e.g. 有効期限の更新."),
    key_type: str = typer.Option("p384", "--key-type", help="The new card's JPKI keys: p384 (the next "
                                 "card's; how an RSA-2048 phone is moved off RSA) or rsa2048."),
    card_number: str = typer.Option(None, "--card-number", help="The new card's number (16 digits); "
                                    "default: a random one."),
    resume: str = typer.Option(None, "--resume", help="Finish the renewal whose workflow stopped (its "
                               "id; give the same --key-type)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """カードの更新: the holder received a new card (new number, new expiry). The phone that
    carries their credentials gets everything anew through the TSM: both certificates with
    keys of --key-type generated in the SE, mdocs with the new card's validity; all it held
    before is revoked as superseded. New PIN, password and PUK are shown once. Exit 2 when
    refused, 1 when the workflow stopped (resume it with --resume)."""
    from issuer.handover import WorkflowError
    from issuer.holders import HolderError
    from mcred.cli.state import open_context
    from mcred.handover_actions import release_secrets, renew_card

    if resume is None and not (reason or "").strip():
        raise typer.BadParameter("give the reason (it is audited)", param_hint="--reason")
    ctx = open_context()
    try:  # hold_secrets: a run that stops after the phone was provisioned leaves them to --resume
        out = renew_card(ctx, holder_id, reason=reason or "", key_type=key_type,
                         card_number=card_number, actor=cli_actor(), resume=resume, hold_secrets=True)
    except (HolderError, WorkflowError) as exc:
        raise _workflow_refused(exc, "renewal", holder_id, as_json) from None
    _show_renewal(holder_id, out, as_json)
    if out["secrets"]:  # shown: not kept any longer, even sealed
        release_secrets(ctx, out["handover"], out["phone"], cli_actor())


def _show_renewal(holder_id: str, out: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    if out["card"]:
        typer.echo(f"holder {holder_id}: card {out['card']['card_number']} until {out['card']['card_expiry']} "
                   f"(was {out['card']['previous_card_number']})")
    if out["phone"] is None:
        typer.echo("no active phone carries their credentials: their next provisioning uses the new card")
        return
    typer.echo(f"phone {out['phone']}: renewal {out['handover']} {out['state']} ({out['key_type']} keys "
               "generated in the SE, certificates and mdocs issued anew, the old ones superseded)")
    if out.get("sign_withheld"):
        typer.echo(f"  no signing certificate: {out['sign_withheld']}")
    _print_steps(out["steps"])
    for k, v in out["secrets"].items():
        typer.echo(f"  new {SECRET_LABELS.get(k, k)} (shown once): {v}")


def audit(
    subject: str = typer.Option(None, "--subject", help="Only events about this credential, phone, holder or "
                                "workflow id."),
    action: str = typer.Option(None, "--action", help="Only this action or its family: credential gives "
                               "credential.revoke, credential.hold, ...; workflow, holder, phone, ..."),
    actor: str = typer.Option(None, "--actor", help="Only what this actor did, or those under it: cli gives "
                              "every cli:NAME (a command's operator: MCRED_ACTOR, else the login name), "
                              "token:ID an API token's."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many (newest first)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many newest first (the next page)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The issuer's audit trail, newest first: who issued, revoked, held, released, handed
    over or let go of what, with the reasons (never a secret)."""
    from issuer.audit import events
    from mcred.cli.state import open_context
    from reader.text import printable

    rows = events(open_context().sessions, subject=subject, action=action, actor=actor, limit=limit, offset=offset)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    for r in rows:
        detail = json.dumps(r["detail"], ensure_ascii=False, separators=(",", ":"), default=str)
        typer.echo(printable(f"{r['at'][:19]}  {r['actor']}  {r['action']}  {r['subject']}"
                             + (f"  {detail[:300]}" if r["detail"] else "")))
    if not rows:
        typer.echo("no audit event" + (f" about {subject}" if subject else "") + (f" for {action}" if action else "")
                   + (f" by {actor}" if actor else ""))


def register(app: typer.Typer) -> None:
    from mcred.cli.consent_cmds import holder_consents

    holder_app.command("consents")(holder_consents)
    app.add_typer(holder_app, name="holder")
    app.command("audit")(audit)
