"""Composition of a presentation (issue 6): a phone's wallet presents to a reader, in-process
or over HTTP (the reader service of :mod:`reader.http`), carrying the same
SessionEstablishment / SessionData bytes either way.

The parts live along their seams, each importing only what it uses, so that a command that
verifies or reads (``mcred mdoc verify``, ``mcred verify``, ``mcred reader nfc``, ``mcred
present``) loads no web framework or database:

* :mod:`mcred.present_wiring`: the wallet, the reader pipeline, a reader's settings;
* :mod:`mcred.present_in_process`: presentations in this process (and :class:`Presentation`);
* :mod:`mcred.present_http`: the phone's side over HTTP (a web client only);
* :mod:`mcred.present_saved`: saved transcripts read back and verified.

This module is the stand-alone reader service (:func:`reader_app`,
``uvicorn --factory mcred.present:reader_app_from_env``), built on FastAPI and the session
store, and names every public name of those parts, as before they were split.

Also a drill shortcut used by tests and benchmarks while ``mcred provision`` is not wired:
:func:`personalise_mdoc_directly` opens SCP03 with the phone's factory keys, installs the
mdoc applet and writes IssuerSigned records made by the caller's issuer code through the
applet's own STORE DATA records (specs/mdoc-applet.md section 4).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from mcred.present_http import (
    CrossDeviceAnswer,
    ask_cross_device,
    present_cross_device_over_http,
    present_online_over_http,
    present_over_http,
    wallet_cross_device,
)
from mcred.present_in_process import (
    ONLINE_PROTOCOLS,
    Presentation,
    PresentError,
    nfc_presentation,
    pick_online_request,
    present_cross_device_in_process,
    present_in_process,
    present_nfc_in_process,
    present_online_in_process,
)
from mcred.present_saved import read_saved, verify_saved
from mcred.present_wiring import (
    READER_SERVE_ENV,
    WALLET_STATE_FILE,
    ReaderParts,
    ReaderServeConfig,
    ReaderServeError,
    ReloadingVerifier,
    new_reader_session,
    open_wallet,
    pem_certificates,
    reader_crls,
    reader_pipeline,
    reader_session_key_path,
    session_sealer,
)
from protocols.gp import HostChannel, StaticKeys
from reader.http import (
    ReaderService,
    cross_device_router,
    online_page_router,
    reader_router,
    relying_party_router,
)
from reader.relying_party import RelyingPartyService
from reader.trust import TrustStore
from tsm import applets as tsm_applets
from tsm import gp_commands

__all__ = [
    "FACTORY_KEYS", "ONLINE_PROTOCOLS", "PAGE_ROUTES", "READER_SERVE_ENV", "WALLET_STATE_FILE",
    "CrossDeviceAnswer", "PageCors", "Presentation", "PresentError", "ReaderParts", "ReaderServeConfig",
    "ReaderServeError", "ask_cross_device", "new_reader_session", "nfc_presentation", "open_wallet",
    "pem_certificates", "personalise_mdoc_directly", "pick_online_request", "present_cross_device_in_process",
    "present_cross_device_over_http", "present_in_process", "present_nfc_in_process", "present_online_in_process",
    "present_online_over_http", "present_over_http", "read_saved", "reader_app", "reader_app_from_env",
    "reader_crls", "reader_pipeline", "reader_session_key_path", "session_sealer", "verify_saved",
    "wallet_cross_device",
]


# -- the stand-alone reader service ----------------------------------------------------------


#: The routes a relying party's web page calls on the reader (specs/presentation.md section
#: 10): open an online session, send it the browser's credential, poll a verdict (a
#: cross-device session's too). The only ones answered to another origin.
PAGE_ROUTES = re.compile(r"/online/sessions(/[^/]+)?|/sessions/[^/]+/result")


class PageCors:
    """CORS (Starlette's ``CORSMiddleware``) on :data:`PAGE_ROUTES` for the page's origin
    (``--origin``) alone: a page at https://rp.example may call a reader at another origin,
    its JSON POST's preflight answered; no credentials (the page sends none, and the reader
    has no cookie), never ``*``. Another origin gets no CORS header (its browser withholds the
    answer; a preflight is a 400), and no other route (in-person sessions, the relying party,
    metrics) answers any."""

    def __init__(self, app: ASGIApp, origin: str) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=[origin], allow_methods=["GET", "POST"],
                                   allow_headers=["Content-Type"], expose_headers=["Location", "X-Session-Id"],
                                   allow_credentials=False, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and PAGE_ROUTES.fullmatch(scope.get("path", "")):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def reader_app(service: ReaderService, rp: RelyingPartyService | None = None) -> FastAPI:
    """The stand-alone reader service (``mcred reader serve``): the mdoc sessions, the JPKI
    relying party when ``rp`` is given, and ``/healthz``, ``/readyz``, ``/metrics``
    (:mod:`mcred.reader_ops`; the verdicts counted through ``service.on_outcome``). Errors
    are ``application/problem+json``. The page's routes answer CORS for the service's
    origin (:class:`PageCors`)."""
    from issuer.api import problems
    from mcred import reader_ops
    from mcred.service import (
        AllowEveryMethodMiddleware,
        HeadWithoutContentMiddleware,
        max_body_size,
    )

    app = FastAPI(title="mcred reader", version="0.1.0", max_body_size=max_body_size(),
                  dependencies=[Depends(problems.refuse_unknown_query)])
    problems.install(app)
    app.add_middleware(HeadWithoutContentMiddleware)
    app.add_middleware(AllowEveryMethodMiddleware)
    if service.origin:  # outermost of ours: the page reads the refusals (404, 409) too
        app.add_middleware(PageCors, origin=service.origin)
    app.include_router(reader_router(service))
    app.include_router(cross_device_router(service))
    app.include_router(online_page_router(service))
    if rp is not None:
        app.include_router(relying_party_router(rp))
    trust = getattr(service.verifier, "trust", None)  # a ReaderPipeline's store, on its clock
    clock = getattr(service.verifier, "clock", None)
    if isinstance(service.verifier, ReloadingVerifier):  # the store of the trust files as they are now
        trust = service.verifier.trust
    reader_ops.install(app, service, rp, trust if isinstance(trust, TrustStore) or callable(trust) else None,
                       clock if callable(clock) else None)
    return app


def reader_app_from_env() -> FastAPI:
    """``uvicorn --factory mcred.present:reader_app_from_env``: the stand-alone reader of the
    settings in ``$MCRED_READER_SERVE`` (what ``mcred reader serve --workers N`` runs in
    each worker). Settings that cannot work are one ``error:`` line and exit 2, not a
    traceback."""
    from mcred.fatal import unusable_exits

    with unusable_exits(ReaderServeError):
        text = os.environ.get(READER_SERVE_ENV)
        if not text:
            raise ReaderServeError(f"${READER_SERVE_ENV} is not set (mcred reader serve sets it)")
        service, rp, _ = ReaderServeConfig.from_json(text).build()
    return reader_app(service, rp)


# -- drill shortcut: personalise the mdoc applet directly -----------------------------------


FACTORY_KEYS = StaticKeys(*(bytes.fromhex("404142434445464748494A4B4C4D4E4F"),) * 3)


def _scp03(transmit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    host = HostChannel(FACTORY_KEYS, 0x33, os.urandom(8), kvn=0, sd_aid=gp_commands.ISD_AID)
    select = gp_commands.select(gp_commands.ISD_AID).to_bytes()
    if transmit(select)[-2:] != b"\x90\x00":
        raise RuntimeError("ISD not selectable")
    r = transmit(host.initialize_update())
    r = transmit(host.on_initialize_update_response(r))
    host.on_external_authenticate_response(r)

    def send(apdu: bytes) -> bytes:
        out = host.unwrap(transmit(host.wrap(apdu)))
        if out[-2:] != b"\x90\x00":
            raise RuntimeError(f"SE answered {out[-2:].hex().upper()} to {apdu[:4].hex().upper()}")
        return out[:-2]

    return send


def personalise_mdoc_directly(
    transmit: Callable[[bytes], bytes],
    slots: Sequence[int],
    challenge_for: Callable[[int], bytes],
    issue: Callable[[int, bytes, bytes], bytes],
) -> dict[int, bytes]:
    """Install the mdoc applet, generate one device key per slot in the SE, have ``issue(slot,
    spki, proof)`` (proof over ``challenge_for(slot) || spki``) make each IssuerSigned, write
    them. Returns ``{slot: IssuerSigned}``. Uses the phone's factory SCP03 keys."""
    ref = tsm_applets.MDOC
    send = _scp03(transmit)
    send(gp_commands.install_for_install(ref.load_file_aid, ref.module_aid, ref.instance_aid).to_bytes())

    def perso(stream: bytes) -> bytes:
        send(gp_commands.install_for_personalization(ref.instance_aid).to_bytes())
        out = b""
        for cmd in gp_commands.store_data_blocks(stream):
            out = send(cmd.to_bytes())
        return out

    perso(tsm_applets.mdoc_generate(list(slots), os.urandom(32)))
    out: dict[int, bytes] = {}
    for slot in slots:
        answer = perso(tsm_applets.mdoc_prove(slot, challenge_for(slot)))
        (kp,) = tsm_applets.parse_mdoc_keys(tsm_applets.answer_of(answer, tsm_applets.MDOC_PROVE, "PROVE"))
        out[slot] = issue(slot, kp.spki, kp.proof)
        perso(tsm_applets.mdoc_write(slot, out[slot]))
    return out
