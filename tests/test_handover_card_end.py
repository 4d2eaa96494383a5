"""Workflows at the edges that end issuance: the mdoc IACA's last months as the installation
configures them, and the end of the holder's card (specs/handover.md, policy 2).

Each test runs in a data directory of its own, under ``time_machine`` (the clock every party
reads) moved to the instant it probes: the years to an IACA's end, or the day after a card's.
"""

from __future__ import annotations

import datetime as dt
import functools

import pytest
import time_machine
from conftest import fsync_skipped
from cryptography import x509
from sqlalchemy import select

import mcred.mdoc_flow
import wallet_sim
from issuer import handover as wf
from issuer.db import Credential, Handover, Holder, IssuerKey, Phone
from issuer.mdoc.pki import MdocPkiConfig
from mcred.context import Context
from mcred.handover_actions import change_basic_four, mdoc_refusal
from mcred.provision import (
    ProvisionError,
    check_mdoc_issuance,
    mdoc_service,
    parse_holder,
    provision,
)
from mcred.samples import HOLDER

SECRETS = {"pin": "1234", "password": "ABC123", "puk": "12345678"}
MOVES = (
    {"address": "神奈川県横浜市中区港町1-1", "prefecture": "神奈川県", "municipality": "横浜市中区"},
    {"address": "東京都千代田区永田町1-7-1", "prefecture": "東京都", "municipality": "千代田区"},
)


@pytest.fixture
def installation(tmp_path, monkeypatch):
    """A data directory of its own (a fresh mdoc service), its mdoc PKI built with the
    ``rollover_margin`` the test configures through :func:`configure`."""
    def configure(**config) -> Context:  # noqa: ANN003
        monkeypatch.setattr(mcred.mdoc_flow, "MdocPkiConfig", functools.partial(MdocPkiConfig, **config))
        return Context.open(tmp_path / "home")

    with fsync_skipped():
        yield configure


def _provisioned(ctx: Context, **holder) -> tuple[str, str]:  # noqa: ANN003
    """(holder id, phone id) of a holder provisioned on a new phone (P-384, one mdoc)."""
    phone = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, phone, parse_holder(dict(HOLDER, **holder)), key_type="p384", mdoc_batch=1, **SECRETS)
    return r.holder_id, phone


def _iaca_end(ctx: Context) -> dt.datetime:
    with ctx.sessions() as s:
        row = s.scalars(select(IssuerKey).where(IssuerKey.purpose == "iaca")).one()
    return x509.load_der_x509_certificate(row.certificate).not_valid_after_utc


def _state(ctx: Context, holder_id: str, phone: str) -> tuple:
    """The holder's data, their workflows, and the phone's state and credentials."""
    with ctx.sessions() as s:
        return (s.get(Holder, holder_id).data,
                sorted((h.kind, h.state, h.step) for h in s.scalars(select(Handover).where(
                    Handover.holder_id == holder_id))),
                s.get(Phone, phone).state,
                sorted((c.kind, c.status, c.reason, c.id)
                       for c in s.scalars(select(Credential).where(Credential.phone_id == phone))))


@pytest.mark.parametrize("margin_days", [30, 120])
def test_a_workflow_is_refused_exactly_when_the_installations_issuance_is(installation, margin_days):
    """A workflow that re-issues mdocs is refused before it is recorded in the mdoc IACA's
    last months: those of the installation's own PKI (its ``rollover_margin``), not the
    default 90 days. Read with the default, an installation with a 30-day margin had a move
    refused 60 days before the IACA's end, where its issuer would have issued the new mdocs;
    one with a 120-day margin had the move recorded, its signing certificate re-issued, and
    the workflow stopped half-way at the mdoc the issuer refused. Probed an hour on either
    side of the installation's edge: the move goes through, or is refused with nothing
    changed, exactly as the issuance check says (``check_mdoc_issuance``, the same margin
    the issuer's signer rule uses)."""
    margin = dt.timedelta(days=margin_days)
    ctx = installation(rollover_margin=margin)
    assert mdoc_service(ctx).pki.config.rollover_margin == margin
    card = (dt.datetime.now(dt.UTC) + dt.timedelta(days=11 * 365)).date().isoformat()  # past the IACA
    holder_id, phone = _provisioned(ctx, card_expiry_date=card)
    end = _iaca_end(ctx)
    for n, (offset, refused) in enumerate(((-dt.timedelta(hours=1), False), (dt.timedelta(hours=1), True))):
        with time_machine.travel(end - margin + offset, tick=True):
            issuance = mdoc_service(ctx).issuance_refusal()
            assert (issuance is not None) is refused, issuance
            if refused:
                with pytest.raises(ProvisionError, match="mcred mdoc iaca rollover"):
                    check_mdoc_issuance(ctx, holder_id)
                before = _state(ctx, holder_id, phone)
                with pytest.raises(wf.WorkflowError, match="mcred mdoc iaca rollover"):
                    change_basic_four(ctx, holder_id, MOVES[n % 2], reason="test", actor="test")
                assert _state(ctx, holder_id, phone) == before  # nothing recorded, nothing issued
                with pytest.raises(wf.WorkflowError, match="mcred mdoc iaca rollover"):
                    wf.create(ctx.sessions, kind="renewal", holder_id=holder_id, new_phone_id=phone,
                              actor="test", mdoc_refusal=mdoc_refusal(ctx))
            else:
                check_mdoc_issuance(ctx, holder_id)
                out = change_basic_four(ctx, holder_id, MOVES[n % 2], reason="test", actor="test")
                assert out["state"] == "done", out
                with ctx.sessions() as s:
                    mdocs = s.scalars(select(Credential).where(
                        Credential.phone_id == phone, Credential.kind == "mdoc", Credential.status == "valid")).all()
                assert [m.issued_at.date() for m in mdocs] == [dt.datetime.now(dt.UTC).date()]
