"""``mcred present``, ``mcred reader serve`` and ``mcred verify`` (issue 6, item 5).

Exit codes: 0 the reader's verdict is VALID, 1 it is not, 2 unusable input (no such phone,
unreachable reader, unreadable file). ``--json`` prints one object in the result shape of
``mcred mdoc verify``: ``{"valid", "checks", "documents"}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mcred.cli.state import out_path
from mcred.cli.text import cell, check_line, checks_table, listing, make_console, markup_safe
from mcred.home import write_private

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2

# The reader's options that `mcred reader serve` and `mcred reader nfc` share.
_TRUST = typer.Option([], "--trust", help="IACA certificate (PEM); repeatable.")
_VICAL = typer.Option(None, "--vical", help="A VICAL to import (needs --vical-trust): a file, or an issuer's "
                      "URL (/trust/vical), which mcred reader serve fetches again every 30 s. Its signer is looked "
                      "up on the CRL its certificate names (the VICAL CA's) unless --offline: a revoked signer, or "
                      "no CRL to be had, refuses it.")
_VICAL_TRUST = typer.Option([], "--vical-trust", help="VICAL signer anchor (PEM).")
_REQUEST = typer.Option([], "--request", help="NS:ID[!] items to ask for (! = retain).")
_DOCTYPE = typer.Option("jp.mcred.mynumber.cardsub.1", "--doctype")
_OFFLINE = typer.Option(False, "--offline", help="Use cached status lists only.")
_SKEW = typer.Option(300, "--skew", help="Clock skew allowed on validity, seconds (0 to a day).")
_FAULT = typer.Option(None, "--fault", help="A hostile phone on purpose, to check that a reader refuses it: the wallet makes this fault in what it presents (`mcred wallet faults` lists them, and the check each must fail).")
# ISO/IEC 18013-5 second edition (DeviceRequest 1.1)
_READER_AUTH_ALL = typer.Option(False, "--reader-auth-all", help="Second edition: sign the whole request once (readerAuthAll) instead of each document request (readerAuth); needs --reader-cert and --reader-key.")
_ALTERNATIVE = typer.Option([], "--alternative", help="Second edition: what the wallet may send in place of an asked element it does not hold, NS:ID=NS:ID[+NS:ID][|NS:ID...] (| between sets in order of preference, + within a set); repeatable.")
_ISSUER_IDS = typer.Option(False, "--issuer-identifiers", help="Second edition: ask only for documents issued under the trusted IACAs (issuerIdentifiers, their key identifiers).")
_REQUIRE_STATUS = typer.Option(True, "--require-status/--no-require-status",
                               help="Refuse an MSO without a status list reference.")
_READER_CERT = typer.Option(None, "--reader-cert", help="readerAuth: certificate chain (PEM, leaf first).")
_READER_KEY = typer.Option(None, "--reader-key", help="readerAuth: the reader's private key (PEM).")
_DS_CRL = typer.Option(None, "--ds-crl/--no-ds-crl",
                       help="Check the IACA CRL for a revoked document signer; default on unless --offline.")
_PORTRAIT = typer.Option(None, "--portrait", callback=out_path, help="Save a disclosed portrait here.")
_READER_CRL = typer.Option([], "--reader-crl", help="A reader CA's CRL (DER or PEM file, or an http(s) URL fetched "
                           "now) the wallet holds: a reader certificate it lists, or whose CA has no current list "
                           "here, is not trusted; repeatable (`mcred reader crl`).")
_SAVE = typer.Option(None, "--save", callback=out_path, help="Save the transcript for `mcred verify`.")
_MAX_RESPONSE_SIZE = typer.Option(None, "--max-response-size", min=1, help="Second edition: the largest document (bytes) the wallet may send (maximumResponseSize).")


def render(console: Console, result: dict) -> None:
    console.print(checks_table(result.get("checks", []), title="reader verdict", result=""))
    for doc in result.get("documents", []):
        items = Table(title=cell(doc["docType"]))
        items.add_column("namespace")
        items.add_column("element")
        items.add_column("value", overflow="fold")
        for ns, elements in doc["elements"].items():
            for ident, value in elements.items():
                text = json.dumps(value, ensure_ascii=False)
                items.add_row(cell(ns), cell(ident), cell(text if len(text) <= 80 else f"<{len(text)} characters>"))
        console.print(items)
        for answer in doc.get("ageOver", []):  # what it says of each age_over_NN asked (ISO/IEC 18013-5 7.2.5)
            console.print(cell(f"{answer['namespace']} / {answer['requested']} asked: {answer['meaning']}"))
    console.print("[bold green]VALID[/]" if result.get("valid") else "[bold red]INVALID[/]")


def save_portrait(result: dict, path: Path) -> bool:
    for doc in result.get("documents", []):
        for elements in doc["elements"].values():
            if isinstance(elements.get("portrait"), str):
                path.write_bytes(base64.b64decode(elements["portrait"]))
                return True
    return False


def _finish(console: Console, result: dict, as_json: bool, portrait: Path | None) -> None:
    saved = save_portrait(result, portrait) if portrait else False
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        render(console, result)
        if portrait:
            console.print(f"portrait saved to {portrait}" if saved else "[yellow]no portrait disclosed[/]")
    raise typer.Exit(EXIT_OK if result.get("valid") else EXIT_FAILED)


def _refusals(console: Console, as_json: bool, present, make_wallet) -> None:  # noqa: ANN001
    """``--fault all``: one honest presentation, which must be VALID, then one with each
    fault of :data:`wallet_sim.faults.FAULTS`, which the reader must refuse by the check the
    fault names (replay: the second presentation of a phone that replays). Prints each, and
    exits 0 only if the reader judged all of them so."""
    from rich.table import Table

    from wallet_sim.faults import FAULTS

    runs = []
    for f in (None, *FAULTS.values()):
        w = make_wallet(f.name if f else None)
        out = present(w)
        if f is not None and f.name == "replay":
            out = present(w)  # the first was genuine, and kept
        failed = [c["name"] for c in out.result["checks"] if not c["passed"]]
        ok = out.valid if f is None else (not out.valid and f.refused_by in failed)
        runs.append({"fault": f.name if f else None, "must": "VALID" if f is None else f"fail {f.refused_by}",
                     "valid": out.valid, "failed": failed, "ok": ok})
    conformant = all(r["ok"] for r in runs)
    if as_json:
        print(json.dumps({"conformant": conformant, "runs": runs}, ensure_ascii=False))
    else:
        table = Table("the phone", "the reader must", "verdict", "failed checks", "")
        for r in runs:
            table.add_row(r["fault"] or "honest", r["must"], "VALID" if r["valid"] else "INVALID",
                          ", ".join(r["failed"]) or "-", "ok" if r["ok"] else "[red]WRONG[/]")
        console.print(table)
        console.print("the reader refused every fault by its check" if conformant
                      else "[red]the reader judged some presentations wrongly[/]")
    raise typer.Exit(EXIT_OK if conformant else EXIT_FAILED)


def _show_qr(console: Console | None, uri: str, png: Path | None) -> None:
    """A cross-device authorization request as a QR code: written as PNG to ``png`` when
    given, and printed (half blocks, then the URI as text) on ``console`` when given."""
    import io

    import segno

    code = segno.make(uri, error="l")
    if png is not None:
        code.save(png, scale=4)
    if console is not None:
        text = io.StringIO()
        code.terminal(out=text, compact=True)
        console.print(text.getvalue(), highlight=False, markup=False, soft_wrap=True)  # never broken: scanned
        console.print(uri, highlight=False, markup=False, soft_wrap=True)


def _ble_counter(console: Console, as_json: bool, read) -> None:  # noqa: ANN001 - uri -> (Presentation, steps)
    """``mcred reader ble --hci T --engagement -``: a counter's reader. A QR scanner types
    each phone's ``mdoc:`` URI as a line; each is read over BLE and judged; never returns.
    Blank lines are skipped; a line that is not a URI is judged like any other (the
    session check names it)."""
    verdicts: list[bool] = []
    for n, line in enumerate(sys.stdin, 1):
        uri = line.strip()
        if not uri:
            continue
        out, steps = read(uri)
        verdicts.append(out.valid)
        if as_json:
            print(json.dumps({"read": len(verdicts), "line": n, **out.result}, ensure_ascii=False), flush=True)
        else:
            console.print(f"read {len(verdicts)} (line {n}): {'VALID' if out.valid else 'INVALID'}", highlight=False)
            for c in out.result.get("checks", []):
                if not c["passed"]:
                    console.print(f"  {check_line(c)}", highlight=False, markup=False)
    if not verdicts:
        _unusable(console, as_json, "no engagement came on standard input")
    raise typer.Exit(EXIT_OK if all(verdicts) else EXIT_FAILED)


def _reader_config(trust: list[Path], vical: str | None, vical_trust: list[Path], request: list[str],
                   doctype: str, offline: bool, skew: int, require_status: bool, reader_cert: Path | None,
                   reader_key: Path | None, ds_crl: bool | None, **more: object):  # noqa: ANN202 - a ReaderServeConfig
    """The reader settings the reader commands share, as a ``ReaderServeConfig`` (paths as text)."""
    from mcred.present_wiring import ReaderServeConfig

    return ReaderServeConfig(
        trust=tuple(map(str, trust)), vical=str(vical) if vical else None, vical_trust=tuple(map(str, vical_trust)),
        request=tuple(request), doctype=doctype, offline=offline, skew=skew, require_status=require_status,
        reader_cert=str(reader_cert) if reader_cert else None, reader_key=str(reader_key) if reader_key else None,
        ds_crl=ds_crl, **more)


def _unusable(console: Console, as_json: bool, message: str) -> None:
    """Exit 2, saying why: with --json the verdict-shaped object on stdout (the machine's
    answer), else ``error: message`` on stderr, as every command's errors, whichever stream
    the command's ``console`` writes its verdict to."""
    if as_json:
        print(json.dumps({"valid": False, "error": message, "checks": [], "documents": []}, ensure_ascii=False))
    else:
        make_console(stderr=True).print(f"[red]error:[/] {markup_safe(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_UNUSABLE)


def _nfc_loop(console: Console, parts, *, pcsc_reader: str | None, wait: float, short: bool,  # noqa: ANN001
              count: int, as_json: bool, trace, hostiles: list[str] | None = None,  # noqa: ANN001
              ble_hci: str | None = None) -> None:
    """``mcred reader nfc --loop``: tap after tap on one PC/SC reader; never returns.
    ``hostiles``: the reader is hostile, tap after tap, in each of these ways in turn."""
    from mcred.present_in_process import nfc_presentation
    from reader.hostile import HOSTILE
    from reader.pcsc import PcscError, wait_until_removed

    verdicts: list[bool] = []
    from collections import deque

    cards: deque = deque(maxlen=1)  # the PC/SC card of the latest tap (its reader's event count then)
    try:
        while count == 0 or len(verdicts) < count:
            if not as_json:
                console.print("take the phone away, then tap the next one..." if verdicts
                              else "tap a phone on the reader...", highlight=False)
            name = hostiles[len(verdicts) % len(hostiles)] if hostiles else None
            if name is not None and not as_json:
                console.print(f"this tap: hostile {name} (the phone must {HOSTILE[name].phone_must})",
                              highlight=False, markup=False)
            try:
                if verdicts and not wait_until_removed(pcsc_reader, wait=wait,
                                                       since=cards[-1].events if cards else None):
                    console.print(f"[yellow]the phone was not taken away within {wait:g} s[/]")
                    break
                out, steps = nfc_presentation(parts, pcsc_reader=pcsc_reader, wait=wait, short=short, trace=trace,
                                              hostile=name, ble_hci=ble_hci, on_card=cards.append)
            except PcscError as exc:  # no reader, no phone in time, pcscd gone between two taps
                if not verdicts:
                    _unusable(console, as_json, str(exc))
                if not as_json:
                    make_console(stderr=True).print(f"error: {markup_safe(str(exc))}", highlight=False)
                break
            verdicts.append(out.valid)
            if as_json:
                print(json.dumps({"tap": len(verdicts), **({"hostile": name} if name else {}), **out.result},
                                 ensure_ascii=False), flush=True)
            else:
                console.print(f"tap {len(verdicts)}", style="bold", highlight=False)
                for step in steps:
                    console.print(f"  {step}", highlight=False, markup=False)
                render(console, out.result)
    except KeyboardInterrupt:
        pass
    if not as_json:
        console.print(f"{len(verdicts)} tap(s), {sum(verdicts)} VALID", highlight=False)
    raise typer.Exit(EXIT_UNUSABLE if not verdicts else EXIT_OK if all(verdicts) else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    @app.command("present")
    def present_cmd(
        phone: str = typer.Option(..., "--phone", help="The phone whose wallet presents."),
        reader: str = typer.Option(..., "--reader", help="Reader service URL, e.g. http://127.0.0.1:8471"),
        consent: Path | None = typer.Option(None, "--consent", help="Consent rules (JSON); default: ask."),
        reader_trust: list[Path] = typer.Option([], "--reader-trust", help="Reader CA (PEM) the wallet trusts for readerAuth."),
        reader_crl: list[str] = _READER_CRL,
        mac: bool = typer.Option(False, "--mac", help="Device authentication by deviceMac, not deviceSignature."),
        qr: Path | None = typer.Option(None, "--qr", callback=out_path, help="Also write the engagement QR code as PNG (cross-device: the page's QR code)."),
        portrait: Path | None = _PORTRAIT,
        save: Path | None = _SAVE,
        token: str | None = typer.Option(None, "--token", envvar="MCRED_API_TOKEN",
                                         help="bearer token (scope reader) for a reader mounted in "
                                              "`mcred serve` (URL .../reader); env MCRED_API_TOKEN"),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        online: bool = typer.Option(False, "--online", help="Present online, as to a web page through the Digital Credentials API (ISO/IEC TS 18013-7 Annex C, org-iso-mdoc: the response sealed with HPKE, bound to the page's origin) instead of in proximity; this command plays the browser."),
        origin: str | None = typer.Option(None, "--origin", help="With --online: the web origin the browser reports to the wallet (default: the reader URL's own). Another origin than the reader's, as a relaying site would give, is refused by the reader."),
        protocol: str = typer.Option("org-iso-mdoc", "--protocol", help="With --online: the Digital Credentials API protocol the page asks with: org-iso-mdoc (ISO/IEC TS 18013-7 Annex C, HPKE), openid4vp (OpenID4VP 1.0, openid4vp-v1-unsigned: DCQL, a JWE response) or openid4vp-signed (openid4vp-v1-signed: the request signed by the reader's certificate, which the wallet checks against --reader-trust); or cross-device (OpenID4VP 1.0 without the browser: the page's QR code, openid4vp://, which the phone scans, fetching the request from the reader and posting its answer there, direct_post.jwt)."),
        fault: str | None = typer.Option(None, "--fault", help="A hostile phone on purpose: the wallet makes this fault in what it presents (`mcred wallet faults`). --fault all: a conformance run, one honest presentation (must be VALID) and one with each fault (each must be refused by the check it names); exit 0 only if the reader judged every one so."),
    ) -> None:
        """Present the phone's mdoc to a reader over HTTP; exit 0 only if the verdict is VALID.
        In proximity by default (engagement QR code, session encryption); online with --online."""
        from mcred.present_http import (
            present_cross_device_over_http,
            present_online_over_http,
            present_over_http,
        )
        from mcred.present_in_process import PresentError
        from mcred.present_wiring import open_wallet, pem_certificates, reader_crls
        from wallet_sim import SeError  # no such phone, or its SE image unreadable
        from wallet_sim.consent import ConsentError, InteractiveConsent, NotedConsent, RulesConsent

        console = make_console(stderr=as_json)
        if origin is not None and not online:
            _unusable(console, as_json, "--origin is the web page's origin of an online presentation: add --online")
        protocols = {"org-iso-mdoc": "org-iso-mdoc", "annex-c": "org-iso-mdoc", "openid4vp": "openid4vp-v1-unsigned",
                     "openid4vp-v1-unsigned": "openid4vp-v1-unsigned", "openid4vp-signed": "openid4vp-v1-signed",
                     "openid4vp-v1-signed": "openid4vp-v1-signed", "cross-device": "openid4vp-cross-device",
                     "openid4vp-cross-device": "openid4vp-cross-device"}
        if protocol not in protocols:
            _unusable(console, as_json, f"--protocol {protocol!r}: org-iso-mdoc, openid4vp, openid4vp-signed or "
                      "cross-device")
        cross_device = online and protocols[protocol] == "openid4vp-cross-device"
        if online and (mac or (qr is not None and not cross_device)):
            _unusable(console, as_json, "--online presents without an engagement or a reader key: "
                      "--mac and --qr are for proximity (and --qr for the page's code cross-device)")
        if protocol != "org-iso-mdoc" and not online:
            _unusable(console, as_json, "--protocol is the protocol of an online presentation: add --online")
        try:
            policy = RulesConsent.from_file(consent) if consent else InteractiveConsent(
                ask=lambda q: console.input(q), show=console.print)
            if consent and not as_json and fault != "all":  # what the phone's screen would say, unattended too
                policy = NotedConsent(policy, lambda line: console.print(f"phone: {line}", highlight=False,
                                                                          markup=False))

            anchors = pem_certificates(reader_trust)
            revocation = reader_crls(reader_crl)

            def make_wallet(name: str | None):  # noqa: ANN202
                return open_wallet(phone, None, policy, device_auth="mac" if mac else "signature", wrap=_wallet_trace,
                                   reader_trust_anchors=anchors, fault=name, reader_revocation=revocation)

            wallet = make_wallet(None if fault == "all" else fault)
        except (ConsentError, SeError, OSError, ValueError) as exc:
            _unusable(console, as_json, str(exc))
        if fault == "all" and (consent is None or save is not None or portrait is not None):
            _unusable(console, as_json, "--fault all presents once honestly and once with each fault: it needs "
                      "--consent (nobody is asked), and takes no --save or --portrait")
        if consent is None and not sys.stdin.isatty():
            # Asking nobody would refuse every item and end in an INVALID verdict that
            # looks like the reader's doing; say what is missing instead.
            _unusable(console, as_json, "no --consent rules file and no terminal to ask the holder: "
                      "pass --consent FILE.json (e.g. {\"documents\": {\"*\": {\"*\": \"*\"}}})")
        def show(engagement) -> None:
            if qr is not None:
                engagement.save_png(qr)
            if not as_json:
                console.print(engagement.terminal(), highlight=False, markup=False, soft_wrap=True)
                console.print(engagement.uri, highlight=False, markup=False, soft_wrap=True)

        def show_uri(uri: str) -> None:
            if not as_json:
                console.print("the verifier's page shows (the phone scans it):", highlight=False)
            _show_qr(None if as_json else console, uri, qr)

        if cross_device and origin is not None:
            _unusable(console, as_json, "--origin is what a browser reports; a cross-device request has "
                      "none (the answer goes to the reader's response_uri)")
        quiet = as_json or fault == "all"  # nothing said but the verdict (show, show_uri: QR files all the same)

        def present(w):  # noqa: ANN001, ANN202 - one presentation of wallet w, as the options say
            if cross_device:
                if not quiet:
                    console.print("cross-device presentation (OpenID4VP 1.0, direct_post.jwt): the phone scans the "
                                  "page's QR code", highlight=False, markup=False)
                return present_cross_device_over_http(w, reader, token=token,
                                                      on_uri=(lambda uri: None) if fault == "all" else show_uri)
            if online:
                if not quiet:
                    from reader.online import origin_of

                    try:
                        shown = origin or origin_of(reader)
                    except ValueError:
                        shown = origin or reader
                    console.print(f"online presentation ({protocols[protocol]}) as the page at {shown}",
                                  highlight=False, markup=False)
                return present_online_over_http(w, reader, origin=origin, token=token, protocol=protocols[protocol])
            return present_over_http(w, reader, on_engagement=(lambda e: None) if fault == "all" else show,
                                     token=token)

        try:
            if fault == "all":
                _refusals(console, as_json, present, make_wallet)
            out = present(wallet)
        except PresentError as exc:
            _unusable(console, as_json, str(exc))
        for event in out.wallet_events:  # why the phone answered with an error status, which the reader
            if event.kind == "error":    # sees as a bare number (status 10): its own words, as a note
                console.print(f"phone: {event.detail}", highlight=False, markup=False, soft_wrap=True)
        if save is not None:
            write_private(save, out.saved())  # the session key and the holder's data: 0600
        _finish(console, out.result, as_json, portrait)

    reader_app = typer.Typer(help="The mdoc reader.", no_args_is_help=True)
    app.add_typer(reader_app, name="reader")

    @reader_app.command("serve")
    def serve_cmd(
        port: int = typer.Option(8471, "--port"),
        host: str = typer.Option("127.0.0.1", "--host"),
        trust: list[Path] = _TRUST,
        vical: str | None = _VICAL,
        vical_trust: list[Path] = _VICAL_TRUST,
        request: list[str] = _REQUEST,
        doctype: str = _DOCTYPE,
        offline: bool = _OFFLINE,
        max_offline_age: int = typer.Option(86400, "--max-offline-age", help="Seconds, up to 366 days."),
        skew: int = _SKEW,
        save_dir: Path | None = typer.Option(None, "--save-dir", help="Save each session's transcript."),
        require_status: bool = _REQUIRE_STATUS,
        reader_cert: Path | None = _READER_CERT,
        reader_key: Path | None = _READER_KEY,
        ds_crl: bool | None = typer.Option(None, "--ds-crl/--no-ds-crl", help="Check the IACA CRL for a revoked document signer (ds_revocation); default on unless --offline."),
        ds_crl_max_age: int = typer.Option(3600, "--ds-crl-max-age", min=0, help="Fetch the IACA CRL again after this many seconds, even before its nextUpdate."),
        jpki_roots: list[Path] = typer.Option([], "--jpki-roots", help="JPKI roots (PEM bundle, `mcred export jpki-root --out r.pem`): also serve the relying party, POST /rp/jpki/verify; repeatable."),
        tsa_roots: list[Path] = typer.Option([], "--tsa-roots", help="With --jpki-roots: time-stamping roots (PEM, `mcred export tsa-root --out t.pem`) a signature's time-stamp must chain to; a time-stamped signature is then judged at its time-stamp; repeatable."),
        db: str | None = typer.Option(None, "--db", help="Keep the sessions in this database (SQLAlchemy URL, e.g. sqlite:///reader.db or postgresql+psycopg://...; its reader_sessions table is created), so that several reader processes or --workers share them; default: this process's memory."),
        workers: int = typer.Option(1, "--workers", min=1, help="uvicorn worker processes (more than one needs --db)."),
        vical_memory: Path | None = typer.Option(None, "--vical-memory", help="With --vical and no --db: a SQLite file (created, mode 0600) keeping the last VICAL taken, so that after a restart an older one (replayed, listing an IACA since removed) is refused as it is while running; default: this process only. With --db it is kept there."),
        session_key_file: Path | None = typer.Option(None, "--session-key-file", help="With --db: the key (hex; created, mode 0600, if absent) that seals each session's EReaderKey in the database; every reader process on that database must use the same file. Default: a key made for this run (sessions do not outlive it)."),
        ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="Serve HTTPS with this certificate chain (PEM, leaf first); needs --ssl-keyfile."),
        ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="The private key of --ssl-certfile (PEM)."),
        origin: str | None = typer.Option(None, "--origin", help="The web origin of the page that asks online (ISO/IEC TS 18013-7 Annex C: POST /online/sessions), e.g. https://rp.example; default: this service's own, http(s)://HOST:PORT. The page's routes (online sessions, GET /sessions/ID/result) answer CORS for this origin alone, without credentials, so a page served elsewhere may call this reader."),
        pcsc_reader: str | None = typer.Option(None, "--pcsc-reader", help="Read phones tapped on this PC/SC reader (a part of its name, or its index) for POST /nfc/taps: a counter's web page asks the reader to read the next tap and gets the verdict (needs pip install '.[nfc]'; one process)."),
        ble_hci: str | None = typer.Option(None, "--ble-hci", help="Read phones over Bluetooth LE on this HCI transport (usb:0, or tcp-client:127.0.0.1:9101 for `mcred ble radio`) for POST /ble/reads: a counter's web page sends the QR code it scanned and gets the verdict (needs pip install '.[ble]'; one process)."),
        public_url: str | None = typer.Option(None, "--public-url", help="The URL a phone reaches this reader at, the base of a cross-device OpenID4VP session's request_uri and response_uri (e.g. https://rp.example); default: http(s)://HOST:PORT. With --reader-cert, name its host in the certificate's DNS SAN for an x509_san_dns: client_id (else x509_hash:)."),
        reader_auth_all: bool = _READER_AUTH_ALL,
        alternative: list[str] = _ALTERNATIVE,
        issuer_identifiers: bool = _ISSUER_IDS,
        max_response_size: int | None = _MAX_RESPONSE_SIZE,
    ) -> None:
        """Run the reader service: POST /sessions, POST /sessions/{id}, GET /sessions/{id}/result;
        online presentation (ISO/IEC TS 18013-7 Annex C, the Digital Credentials API's
        org-iso-mdoc) with POST /online/sessions, POST /online/sessions/{id}, and a test page
        for a browser's own wallet at GET /online; and POST /rp/jpki/verify with --jpki-roots."""
        import os

        import uvicorn

        from mcred.cli.state import check_can_listen
        from mcred.present import (
            READER_SERVE_ENV,
            ReaderServeError,
            session_sealer,
        )
        from mcred.present import reader_app as build_app
        from mcred.service import tls_options

        console = make_console()
        try:
            tls = tls_options(ssl_certfile, ssl_keyfile)
        except ValueError as exc:
            _unusable(console, False, str(exc))
        if session_key_file is not None and db is None:
            _unusable(console, False, "--session-key-file seals sessions kept in a database: give --db too")
        if workers > 1 and pcsc_reader is not None:
            _unusable(console, False, f"--pcsc-reader with --workers {workers}: one process owns the PC/SC reader")
        if ble_hci is not None:
            import blelink

            if workers > 1:
                _unusable(console, False, f"--ble-hci with --workers {workers}: one process owns the Bluetooth "
                          "controller")
            try:
                blelink.require()
            except blelink.LinkError as exc:
                _unusable(console, False, str(exc))
        if workers > 1 and db is None:
            _unusable(console, False, f"--workers {workers} needs --db: sessions kept in one process's "
                      "memory cannot be continued by another")
        check_can_listen(host, port)
        from reader.errors import ReaderSessionError
        from reader.online import origin_of

        own_url = f"{'https' if tls else 'http'}://{host}:{port}"
        try:
            origin = origin or origin_of(own_url)
        except ReaderSessionError as exc:
            _unusable(console, False, f"--origin: {exc}")
        config = _reader_config(
            trust, vical, vical_trust, request, doctype, offline, skew, require_status, reader_cert, reader_key,
            ds_crl, max_offline_age=max_offline_age, save_dir=str(save_dir) if save_dir else None,
            ds_crl_max_age=ds_crl_max_age, jpki_roots=tuple(map(str, jpki_roots)),
            tsa_roots=tuple(map(str, tsa_roots)), db=db, vical_memory=str(vical_memory) if vical_memory else None,
            session_key_file=str(session_key_file) if session_key_file else None, origin=origin,
            public_url=public_url or own_url, pcsc_reader=pcsc_reader, ble_hci=ble_hci,
            reader_auth_all=reader_auth_all,
            alternatives=tuple(alternative), issuer_identifiers=issuer_identifiers, max_response_size=max_response_size)
        try:
            service, rp, what = config.build()  # every worker builds the same; this one checks it
        except ReaderServeError as exc:
            _unusable(console, False, str(exc))
        console.print(f"reader on {'https' if tls else 'http'}://{host}:{port} {what}"
                      + (f", {workers} workers" if workers > 1 else ""))
        console.print(f"online test page for a browser's own wallet: {'https' if tls else 'http'}://{host}:{port}/online "
                      f"(requests bound to {origin}); phones reach it cross-device at {config.public_url}/oid4vp/...",
                      highlight=False)
        if workers == 1:
            uvicorn.run(build_app(service, rp), host=host, port=port, log_level="warning", **tls)
            return
        import dataclasses
        import tempfile

        from mcred.metrics import shared_across_workers

        service.store.engine.dispose()  # this process only starts the workers
        with tempfile.TemporaryDirectory(prefix="mcred-reader-") as run_dir, shared_across_workers():
            if config.session_key_file is None:  # one key for this run's workers, gone with it
                config = dataclasses.replace(config, session_key_file=str(Path(run_dir) / "session.key"))
                session_sealer(Path(config.session_key_file))
            os.environ[READER_SERVE_ENV] = config.to_json()
            uvicorn.run("mcred.present:reader_app_from_env", factory=True, workers=workers, host=host,
                        port=port, log_level="warning", **tls)

    @reader_app.command("hostile")
    def reader_hostile_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON array.")) -> None:
        """The faults a hostile reader can make (`mcred reader nfc --hostile`), and what a
        phone's wallet must do with each: a wallet that does otherwise is broken."""
        from reader.hostile import HOSTILE

        listing([{"hostile": h.name, "does": h.does, "phone_must": h.phone_must} for h in HOSTILE.values()],
                 {"hostile": "hostile", "does": "what the reader does", "phone_must": "the phone must"}, as_json)

    @reader_app.command("certificate")
    def certificate_cmd(
        out_dir: Path = typer.Option(..., "--out-dir", help="Directory for reader.pem, reader.key (and reader-ca.pem, reader-ca.key); nothing there is overwritten."),
        cn: str = typer.Option("mcred test reader", "--cn", help="The reader's name, as the wallet shows it to the holder."),
        dns: list[str] = typer.Option([], "--dns", help="A DNS name for subjectAltName (the host of the reader's --public-url, for an x509_san_dns: client_id); repeatable."),
        days: int = typer.Option(365, "--days", min=1, max=1187, help="Validity of the reader certificate (Annex B.1.7: at most 1187 days)."),
        curve: str = typer.Option("p256", "--curve", help="p256 or p384."),
        ca_cert: Path | None = typer.Option(None, "--ca-cert", help="Issue under this reader CA (PEM) instead of making a new one; needs --ca-key."),
        ca_key: Path | None = typer.Option(None, "--ca-key", help="The private key of --ca-cert (PEM)."),
        ca_cn: str = typer.Option("mcred reader CA", "--ca-cn", help="The name of the reader CA made here (not with --ca-cert)."),
        crl_uri: str | None = typer.Option(None, "--crl-uri", help="A CRL distribution point to write into the certificates (`mcred reader crl` issues the list)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Make a reader authentication certificate (ISO/IEC 18013-5 Annex B.1.7, EKU
        1.0.18013.5.1.6) and, unless --ca-cert is given, the reader CA above it: for `mcred
        reader serve|nfc --reader-cert reader.pem --reader-key reader.key`, with the CA for the
        wallet (`mcred present|phone pcsc --reader-trust reader-ca.pem`)."""
        from mcred.reader_pki import ReaderPkiError, make_reader_certificate

        console = make_console(stderr=as_json)
        if (ca_cert is None) != (ca_key is None):
            _unusable(console, as_json, "--ca-cert and --ca-key go together")
        try:
            made = make_reader_certificate(out_dir, common_name=cn, dns_names=tuple(dns), days=days, curve=curve,
                                           ca=(ca_cert, ca_key) if ca_cert is not None else None, crl_uri=crl_uri,
                                           ca_common_name=ca_cn)
        except ReaderPkiError as exc:
            _unusable(console, as_json, str(exc))
        if as_json:
            print(json.dumps({"subject": made.subject, "not_after": made.not_after.isoformat(),
                              "reader_cert": str(made.cert), "reader_key": str(made.key),
                              "reader_ca": str(made.ca_cert), "reader_ca_key": str(made.ca_key) if made.ca_key else None}))
            raise typer.Exit(EXIT_OK)
        console.print(f"reader certificate {made.subject}, valid until {made.not_after:%Y-%m-%d}: {made.cert} "
                      f"(key {made.key}); reader CA {made.ca_cert}", highlight=False, markup=False)
        console.print(f"reader: mcred reader serve --reader-cert {made.cert} --reader-key {made.key} ...; "
                      f"wallet: mcred present --reader-trust {made.ca_cert} ...", highlight=False, markup=False)

    @reader_app.command("crl")
    def crl_cmd(
        out: Path = typer.Option(..., "--out", help="The reader CA's CRL (DER): issued anew over the one there, whose entries it keeps."),
        ca_cert: Path = typer.Option(..., "--ca-cert", help="The reader CA (PEM), e.g. reader-ca.pem of `mcred reader certificate`."),
        ca_key: Path = typer.Option(..., "--ca-key", help="The private key of --ca-cert (PEM)."),
        revoke: list[Path] = typer.Option([], "--revoke", help="A reader certificate (PEM) of this CA to list as revoked; repeatable."),
        reason: str = typer.Option("unspecified", "--reason", help="Why, for the certificates of --revoke (RFC 5280): unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn."),
        days: int = typer.Option(7, "--days", min=1, max=366, help="nextUpdate this many days after now: wallets holding the list refuse it after that."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Issue the reader CA's certificate revocation list: revoke reader certificates
        (--revoke), or only issue the list again before its nextUpdate. A wallet given it
        (`mcred present|phone pcsc|wallet respond --reader-crl FILE|URL`) trusts no reader
        certificate it lists, and no reader of this CA once the list is out of date."""
        from mcred.reader_pki import ReaderPkiError, update_reader_crl

        console = make_console(stderr=as_json)
        try:
            done = update_reader_crl(out, (ca_cert, ca_key), revoke=tuple(revoke), reason=reason, days=days)
        except ReaderPkiError as exc:
            _unusable(console, as_json, str(exc))
        if as_json:
            print(json.dumps({
                "crl": str(done.path), "number": done.number, "this_update": done.this_update.isoformat(),
                "next_update": done.next_update.isoformat(), "added": [f"{n:x}" for n in done.added],
                "already": [f"{n:x}" for n in done.already],
                "entries": [{"serial": f"{e.serial_number:x}", "revoked_at": e.revoked_at.isoformat(),
                             "reason": e.reason} for e in done.entries]}))
            raise typer.Exit(EXIT_OK)
        for n in done.added:
            console.print(f"revoked serial {n:x} ({reason})", highlight=False, markup=False)
        for n in done.already:
            console.print(f"serial {n:x} was listed already: kept as it was", highlight=False, markup=False)
        console.print(f"{done.path}: CRL number {done.number}, {len(done.entries)} revoked, next update "
                      f"{done.next_update:%Y-%m-%d %H:%M} UTC; wallets: --reader-crl {done.path}",
                      highlight=False, markup=False)

    @reader_app.command("ask")
    def ask_cmd(
        reader: str = typer.Option(..., "--reader", help="Reader service URL (its --public-url must be reachable by the phone), e.g. https://rp.example"),
        token: str | None = typer.Option(None, "--token", envvar="MCRED_API_TOKEN",
                                         help="bearer token (scope reader) for a reader mounted in `mcred serve` "
                                              "(URL .../reader); env MCRED_API_TOKEN"),
        qr: Path | None = typer.Option(None, "--qr", callback=out_path, help="Also write the QR code as PNG."),
        wait: int = typer.Option(300, "--wait", min=1, max=3600, help="Seconds to wait for a wallet's answer."),
        portrait: Path | None = _PORTRAIT,
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the QR code goes to stderr)."),
    ) -> None:
        """Ask any wallet for the card substitute cross-device (OpenID4VP 1.0, direct_post.jwt):
        the reader's QR code is shown here for a phone to scan (a real wallet app, or `mcred
        wallet respond --qr`), and its verdict printed when the phone has answered; exit 0
        only if it is VALID."""
        from mcred.present_http import ask_cross_device
        from mcred.present_in_process import PresentError

        console = make_console(stderr=as_json)

        def show(uri: str) -> None:
            _show_qr(console, uri, qr)
            console.print(f"waiting up to {wait} s for a wallet to answer...", highlight=False)

        try:
            result = ask_cross_device(reader, on_uri=show, token=token, wait=float(wait))
        except PresentError as exc:
            _unusable(console, as_json, str(exc))
        _finish(console, result, as_json, portrait)

    @reader_app.command("nfc")
    def nfc_cmd(
        pcsc_reader: str | None = typer.Option(None, "--pcsc-reader", help="The PC/SC reader the phone is tapped on (a part of its name, or its index); default: the first. `mcred phone pcsc` puts a simulated phone in vpcd's."),
        phone: str | None = typer.Option(None, "--phone", help="Tap this simulated phone in-process instead of reading PC/SC."),
        consent: Path | None = typer.Option(None, "--consent", help="With --phone: the wallet's consent rules (JSON)."),
        phone_reader_trust: list[Path] = typer.Option([], "--reader-trust", help="With --phone: a reader CA (PEM) the simulated phone's wallet trusts for readerAuth."),
        phone_reader_crl: list[str] = typer.Option([], "--reader-crl", help="With --phone: a reader CA's CRL (file or http(s) URL) the simulated phone's wallet holds; repeatable."),
        handover: str = typer.Option("static", "--handover", help="With --phone: the simulated phone's NFC engagement, static or negotiated (TNEP). A phone on a PC/SC reader chooses its own; the reader follows either."),
        trust: list[Path] = _TRUST,
        vical: str | None = _VICAL,
        vical_trust: list[Path] = _VICAL_TRUST,
        request: list[str] = _REQUEST,
        doctype: str = _DOCTYPE,
        offline: bool = _OFFLINE,
        skew: int = _SKEW,
        require_status: bool = _REQUIRE_STATUS,
        reader_cert: Path | None = _READER_CERT,
        reader_key: Path | None = _READER_KEY,
        ds_crl: bool | None = _DS_CRL,
        short: bool = typer.Option(False, "--short", help="Short APDUs only (commands of 255 bytes, answers of 256): for antennas without extended length."),
        loop: bool = typer.Option(False, "--loop", help="A counter's reader: read tap after tap (each phone must leave the reader before the next tap counts), a verdict each (with --json, one JSON object a line), until --count taps, Ctrl-C, or no phone within --wait; exit 0 if every tap was VALID, 1 if one was not, 2 if none was read."),
        count: int = typer.Option(0, "--count", min=0, help="With --loop: stop after this many taps (0: no limit)."),
        list_readers: bool = typer.Option(False, "--list", help="List the PC/SC readers (index, name, whether a phone or card is in it) and exit."),
        wait: int = typer.Option(30, "--wait", min=1, max=3600, help="Seconds to wait for a phone on the PC/SC reader."),
        portrait: Path | None = _PORTRAIT,
        save: Path | None = _SAVE,
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        reader_auth_all: bool = _READER_AUTH_ALL,
        alternative: list[str] = _ALTERNATIVE,
        issuer_identifiers: bool = _ISSUER_IDS,
        max_response_size: int | None = _MAX_RESPONSE_SIZE,
        fault: str | None = _FAULT,
        ble_hci: str | None = typer.Option(None, "--ble-hci", help="Also take data retrieval over Bluetooth LE (preferred to NFC), on this HCI transport (tcp-client:127.0.0.1:9101 for `mcred ble radio`, usb:0 for a dongle): a phone whose Handover Select offers BLE goes on over BLE after the tap (`mcred phone pcsc --ble-hci`). A phone on the PC/SC reader only; in-process, `mcred reader ble --phone ID --tap`."),
        hostile: str | None = typer.Option(None, "--hostile", help="A hostile reader on purpose, to check that a phone's wallet refuses it: the reader makes this fault in what it sends (`mcred reader hostile` lists them and what the phone must do); the verdict is then on the phone's answer. all: each in turn, tap after tap with --loop, or in-process with --phone (readerAuth faults only with --reader-cert)."),
    ) -> None:
        """Read a phone by NFC (ISO/IEC 18013-5: NFC engagement by static handover, data
        retrieval over NFC): tapped on a PC/SC contactless reader, or a simulated phone with
        --phone; print the verdict, exit 0 only if it is VALID. --trace prints every APDU."""
        from mcred.cli.state import OPTIONS
        from mcred.present_in_process import PresentError, nfc_presentation
        from mcred.present_wiring import (
            ReaderServeError,
            open_wallet,
            pem_certificates,
            reader_crls,
        )
        from reader.pcsc import PcscError
        from wallet_sim import SeError  # no such phone, or its SE image unreadable
        from wallet_sim.consent import ConsentError, RulesConsent

        console = make_console(stderr=as_json)
        if list_readers:
            from reader.pcsc import readers

            try:
                found = readers()
            except PcscError as exc:
                _unusable(console, as_json, str(exc))
            if as_json:
                print(json.dumps([{"index": i, "name": n, "card": c} for i, (n, c) in enumerate(found)]))
            for i, (name, card) in enumerate([] if as_json else found):
                state = "a phone or card in it" if card else "empty" if card is False else "state unknown"
                console.print(f"{i}  {name}  ({state})", highlight=False, markup=False)
            if not found and not as_json:
                console.print("no PC/SC reader", highlight=False)
            raise typer.Exit(EXIT_OK)
        if phone is not None and pcsc_reader is not None:
            _unusable(console, as_json, "--phone taps a simulated phone in-process; --pcsc-reader reads one over "
                      "PC/SC: give one of them")
        if handover not in ("static", "negotiated"):
            _unusable(console, as_json, f"--handover {handover!r}: static or negotiated")
        if ble_hci is not None:
            import blelink

            if phone is not None:
                _unusable(console, as_json, "--ble-hci reads a phone on the PC/SC reader; a simulated phone in-process "
                          "taps and goes on over BLE with `mcred reader ble --phone ID --tap`")
            try:
                blelink.require()
            except blelink.LinkError as exc:
                _unusable(console, as_json, str(exc))
        if (phone_reader_trust or phone_reader_crl) and phone is None:
            _unusable(console, as_json, "--reader-trust and --reader-crl are the simulated phone's (--phone; `mcred "
                      "phone pcsc --reader-trust --reader-crl` for a phone on the PC/SC reader)")
        if fault is not None and phone is None:
            _unusable(console, as_json, "--fault is the simulated phone's (--phone, or `mcred phone pcsc --fault` for a "
                      "phone on the PC/SC reader)")
        if (consent is not None or handover != "static") and phone is None:
            _unusable(console, as_json, "--consent and --handover are the simulated phone's (--phone); a phone on "
                      "a PC/SC reader asks its holder and chooses its handover itself")
        from reader.hostile import HOSTILE

        if hostile not in (None, "all") and loop:
            _unusable(console, as_json, f"--hostile {hostile} reads one tap; --hostile all --loop cycles through "
                      "them tap after tap")
        if hostile == "all" and not loop and phone is None:
            _unusable(console, as_json, "--hostile all: with --loop (tap after tap, a phone on the PC/SC reader) "
                      "or with --phone (each in turn, in-process)")
        hostiles = None
        if hostile == "all":
            hostiles = [h.name for h in HOSTILE.values() if not h.needs_reader_key or reader_cert is not None]
        if loop and (phone is not None or save is not None or portrait is not None):
            _unusable(console, as_json, "--loop reads phones on a PC/SC reader, one verdict a tap: not with "
                      "--phone, --save or --portrait")
        if not trust and vical is None:
            _unusable(console, as_json, "no IACA to trust: give --trust IACA.pem (mcred export iaca)")
        config = _reader_config(
            trust, vical, vical_trust, request, doctype, offline, skew, require_status, reader_cert, reader_key,
            ds_crl, reader_auth_all=reader_auth_all, alternatives=tuple(alternative),
            issuer_identifiers=issuer_identifiers, max_response_size=max_response_size)
        try:
            parts = config.parts()
            if not len(parts.pipeline.trust):
                raise ReaderServeError("no IACA to trust: give --trust IACA.pem (mcred export iaca)")
            wallet = None
            if phone is not None:
                if consent is None:
                    raise ConsentError("--phone needs --consent FILE.json: nobody is there to ask the holder "
                                       "(e.g. {\"documents\": {\"*\": {\"*\": \"*\"}}})")
                wallet = open_wallet(phone, None, RulesConsent.from_file(consent), fault=fault,
                                     reader_trust_anchors=pem_certificates(phone_reader_trust),
                                     reader_revocation=reader_crls(phone_reader_crl))
        except (ReaderServeError, ConsentError, SeError, OSError, ValueError) as exc:
            _unusable(console, as_json, str(exc))

        from mcred.cli.phone_cmds import stderr_sink

        trace_line = stderr_sink()

        def trace(direction: str, apdu: bytes) -> None:
            trace_line(f"{'A>>' if direction == '>' else 'A<<'} nfc   ({len(apdu):04}) {apdu.hex().upper()}")

        if loop:
            _nfc_loop(console, parts, pcsc_reader=pcsc_reader, wait=float(wait), short=short, count=count,
                      as_json=as_json, trace=trace if OPTIONS.trace else None, hostiles=hostiles, ble_hci=ble_hci)
        if hostiles is not None:  # --phone: each in turn, in-process
            runs = []
            for name in hostiles:
                out, _ = nfc_presentation(parts, wallet=wallet, short=short, handover=handover, hostile=name,
                                          trace=trace if OPTIONS.trace else None)
                judged = not HOSTILE[name].needs_reader_key  # readerAuth: only the phone's screen can tell
                failed = [f"{c['name']}: {c['reason']}" for c in out.result["checks"] if not c["passed"]]
                runs.append({"hostile": name, "phone_must": HOSTILE[name].phone_must, "judged": judged,
                             "valid": out.valid if judged else None, "failed": failed if judged else []})
            ok = all(r["valid"] for r in runs if r["judged"])
            if as_json:
                print(json.dumps({"valid": ok, "runs": runs}, ensure_ascii=False))
            else:
                from rich.table import Table

                table = Table("hostile", "the phone must", "verdict")
                for r in runs:
                    table.add_row(r["hostile"], r["phone_must"], "look at the phone" if not r["judged"]
                                  else "ok" if r["valid"] else "; ".join(r["failed"]))
                console.print(table)
            raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)
        if not as_json:
            console.print("tap the phone on the reader..." if wallet is None else f"tapping {phone}",
                          highlight=False)
        try:
            out, steps = nfc_presentation(parts, wallet=wallet, pcsc_reader=pcsc_reader, wait=float(wait),
                                          short=short, trace=trace if OPTIONS.trace else None,
                                          handover=handover, hostile=hostile, ble_hci=ble_hci)
        except (PcscError, PresentError, ValueError) as exc:  # HostileError, ReaderSessionError are ValueErrors
            _unusable(console, as_json, str(exc))
        if not as_json:
            for step in steps:
                console.print(f"  {step}", highlight=False, markup=False)
            if hostile is not None and HOSTILE[hostile].needs_reader_key:
                console.print(f"  hostile {hostile}: look at the phone: it must {HOSTILE[hostile].phone_must}",
                              highlight=False, markup=False)
        if save is not None:
            write_private(save, out.saved())  # the session key and the holder's data: 0600
        _finish(console, out.result, as_json, portrait)

    @reader_app.command("ble")
    def ble_cmd(
        phone: str | None = typer.Option(None, "--phone", help="Read this simulated phone in-process, on a virtual radio."),
        consent: Path | None = typer.Option(None, "--consent", help="With --phone: the wallet's consent rules (JSON)."),
        mode: str = typer.Option("peripheral", "--mode", help="With --phone: the BLE mode the phone's engagement offers: peripheral (mdoc peripheral server mode: the phone advertises, the reader connects) or central (mdoc central client mode: the reader advertises, the phone connects and checks its Ident)."),
        hci: str | None = typer.Option(None, "--hci", help="Read a phone elsewhere through this HCI transport, as bumble names it: tcp-client:127.0.0.1:9101 for a port of `mcred ble radio`, usb:0 for a USB Bluetooth dongle."),
        engagement: str | None = typer.Option(None, "--engagement", help="With --hci: the phone's QR code, its mdoc: URI (`mcred phone ble` prints it); - reads one URI a line from standard input until its end, as a counter's QR scanner types them: a verdict each (with --json, one JSON object a line); exit 0 if every read was VALID, 1 if one was not, 2 if none came."),
        reader_mode: str = typer.Option("auto", "--reader-mode", help="auto (peripheral server mode if the phone offers it, else central client mode), peripheral or central."),
        tap: bool = typer.Option(False, "--tap", help="With --phone: engage by an NFC tap instead of the QR code; the phone's Handover Select offers BLE and the session goes on over BLE."),
        handover: str = typer.Option("static", "--handover", help="With --tap: static (the phone offers BLE in --mode) or negotiated (TNEP: the reader offers BLE in both modes on its own UUID, the phone settles --mode; central client mode then runs on the reader's UUID, as in ISO 18013-5 Annex D)."),
        trust: list[Path] = _TRUST,
        vical: str | None = _VICAL,
        vical_trust: list[Path] = _VICAL_TRUST,
        request: list[str] = _REQUEST,
        doctype: str = _DOCTYPE,
        offline: bool = _OFFLINE,
        skew: int = _SKEW,
        require_status: bool = _REQUIRE_STATUS,
        reader_cert: Path | None = _READER_CERT,
        reader_key: Path | None = _READER_KEY,
        ds_crl: bool | None = _DS_CRL,
        wait: int = typer.Option(30, "--wait", min=1, max=3600, help="Seconds to wait for the phone at each step (found, started, answered)."),
        portrait: Path | None = _PORTRAIT,
        save: Path | None = _SAVE,
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        fault: str | None = typer.Option(None, "--fault", help="With --phone: a hostile phone on purpose, to check that this reader refuses it (`mcred wallet faults`); all: one honest presentation, then one with each fault, and exit 0 only if the reader judged each as it must."),
        hostile: str | None = typer.Option(None, "--hostile", help="A hostile reader on purpose (`mcred reader hostile`): the verdict is then on the phone's refusal."),
        snoop: Path | None = typer.Option(None, "--snoop", callback=out_path, help="Write the reader's Bluetooth HCI traffic to this file for Wireshark: btsnoop (as Android's btsnoop_hci.log), or pcap when it ends in .pcap."),
    ) -> None:
        """Read a phone over Bluetooth Low Energy (ISO/IEC 18013-5: QR engagement offering
        BLE, or an NFC tap handing over to BLE with --tap; data retrieval over BLE in mdoc
        peripheral server or central client mode): a simulated phone with --phone, or a
        phone elsewhere with --hci and --engagement; print the verdict, exit 0 only if it
        is VALID."""
        import blelink

        console = make_console(stderr=as_json)
        try:
            blelink.require()
        except blelink.LinkError as exc:
            _unusable(console, as_json, str(exc))
        if (phone is None) == (hci is None):
            _unusable(console, as_json, "give --phone (a simulated phone, in-process) or --hci with --engagement "
                      "(a phone elsewhere)")
        if hci is not None and not engagement:
            _unusable(console, as_json, "--hci reads a phone elsewhere: give its QR code with --engagement mdoc:...")
        if engagement is not None and hci is None:
            _unusable(console, as_json, "--engagement is a phone elsewhere's QR code: read it with --hci")
        if mode not in ("peripheral", "central") or reader_mode not in ("auto", "peripheral", "central"):
            _unusable(console, as_json, f"--mode {mode!r}: peripheral or central; --reader-mode {reader_mode!r}: "
                      "auto, peripheral or central")
        if (consent is not None or fault is not None or tap) and phone is None:
            _unusable(console, as_json, "--consent, --fault and --tap are the simulated phone's (--phone)")
        if handover not in ("static", "negotiated") or (handover != "static" and not tap):
            _unusable(console, as_json, f"--handover {handover!r}: static or negotiated, with --tap")
        if not trust and vical is None:
            _unusable(console, as_json, "no IACA to trust: give --trust IACA.pem (mcred export iaca)")
        if fault == "all" and (save is not None or portrait is not None or hostile is not None):
            _unusable(console, as_json, "--fault all presents once honestly and once with each fault: no --save, "
                      "--portrait or --hostile")
        # the reader's stack (web client, database, BLE host) only once the options can work:
        # a mistyped option is said at once
        from mcred.present_ble import ble_presentation
        from mcred.present_wiring import ReaderServeError, open_wallet
        from wallet_sim import SeError  # no such phone, or its SE image unreadable
        from wallet_sim.consent import ConsentError, RulesConsent

        config = _reader_config(trust, vical, vical_trust, request, doctype, offline, skew, require_status,
                                reader_cert, reader_key, ds_crl)
        try:
            from reader.hostile import hostile as named_hostile

            named_hostile(hostile)
            parts = config.parts()
            if not len(parts.pipeline.trust):
                raise ReaderServeError("no IACA to trust: give --trust IACA.pem (mcred export iaca)")
            wallet = make_wallet = None
            if phone is not None:
                if consent is None:
                    raise ConsentError("--phone needs --consent FILE.json: nobody is there to ask the holder "
                                       "(e.g. {\"documents\": {\"*\": {\"*\": \"*\"}}})")
                policy = RulesConsent.from_file(consent)

                def make_wallet(name: str | None):  # noqa: ANN202
                    return open_wallet(phone, None, policy, fault=name)

                wallet = make_wallet(None if fault == "all" else fault)
        except (ReaderServeError, ConsentError, SeError, OSError, ValueError) as exc:
            _unusable(console, as_json, str(exc))

        def present(w):  # noqa: ANN001, ANN202 - one read of wallet w, as the options say
            return ble_presentation(parts, wallet=w, mode=mode, reader_mode=reader_mode, hci=hci,
                                    engagement=engagement, timeout=float(wait), tap=handover if tap else None,
                                    hostile=hostile, snoop=snoop)

        if fault == "all":
            _refusals(console, as_json, lambda w: present(w)[0], make_wallet)
        if engagement == "-":
            if save is not None or portrait is not None:
                _unusable(console, as_json, "--engagement - reads phone after phone: no --save or --portrait")
            _ble_counter(console, as_json, lambda uri: ble_presentation(
                parts, mode=mode, reader_mode=reader_mode, hci=hci, engagement=uri, timeout=float(wait),
                hostile=hostile, snoop=snoop))
        if not as_json:
            console.print(f"reading {phone} over BLE on a virtual radio" if wallet is not None
                          else f"reading the phone over BLE through {hci}", highlight=False, markup=False)
        try:
            out, steps = present(wallet)
        except ValueError as exc:
            _unusable(console, as_json, str(exc))
        if not as_json:
            for step in steps:
                console.print(f"  {step}", highlight=False, markup=False)
        if save is not None:
            write_private(save, out.saved())  # the session key and the holder's data: 0600
        _finish(console, out.result, as_json, portrait)

    wallet_app = typer.Typer(help="The phone's wallet app, on its own.", no_args_is_help=True)
    app.add_typer(wallet_app, name="wallet")

    @wallet_app.command("faults")
    def wallet_faults_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON array.")) -> None:
        """The faults a hostile phone can make (--fault of `mcred present`, `mcred wallet
        respond`, `mcred phone pcsc`, `mcred reader nfc --phone`), and the reader check each
        must fail (with its code in our reader's verdict): a reader that accepts one of them is broken."""
        from wallet_sim.faults import describe

        listing(describe(), {"fault": "fault", "does": "what the phone does", "refused_by": "a reader must fail",
                             "code": "our reader's code"}, as_json)

    @wallet_app.command("respond")
    def wallet_respond_cmd(
        phone: str = typer.Option(..., "--phone", help="The phone whose wallet answers."),
        request: str | None = typer.Option(None, "--request", help="The page's request, JSON: a {protocol, data} object, or "
                                           "navigator.credentials.get's argument ({digital: {requests: [...]}}); - for stdin. "
                                           "Or a verifier's QR code as its URI (openid4vp://?client_id=...): the wallet then "
                                           "fetches the request and posts its answer to the verifier itself (cross-device)."),
        qr: Path | None = typer.Option(None, "--qr", help="Or a picture of the verifier's QR code (a screenshot of its page, a photo: PNG, JPEG, ...), scanned as the phone's camera would (needs the scan extra: zxing-cpp, Pillow); then as a URI given to --request."),
        origin: str | None = typer.Option(None, "--origin", help="The web origin of the page that asks, as the browser would report it (Digital Credentials API requests; a cross-device URI has none)."),
        consent: Path | None = typer.Option(None, "--consent", help="Consent rules (JSON); default: ask."),
        reader_trust: list[Path] = typer.Option([], "--reader-trust", help="Reader / verifier CA (PEM) the wallet trusts."),
        reader_crl: list[str] = _READER_CRL,
        protocol: str | None = typer.Option(None, "--protocol", help="Answer this protocol of those offered "
                                            "(default: org-iso-mdoc, then openid4vp-v1-signed, then openid4vp-v1-unsigned)."),
        out: Path | None = typer.Option(None, "--out", callback=out_path, help="Write the credential here (default: stdout)."),
        fault: str | None = _FAULT,
    ) -> None:
        """Answer a web page's Digital Credentials API request from any verifier, as the browser
        would hand it to this phone's wallet: prints the credential ({protocol, data}) the page
        receives, to give to that verifier. ISO/IEC TS 18013-7 Annex C and OpenID4VP 1.0
        (unsigned and signed). Or answer a verifier's QR code (openid4vp://...) cross-device,
        over HTTP to that verifier: prints its answer. Exit 0 answered (a credential, or
        OAuth's access_denied when nothing is released), 2 a request the wallet cannot answer
        or a verifier that refused the answer."""
        from mcred.present_http import wallet_cross_device
        from mcred.present_in_process import PresentError, pick_online_request
        from mcred.present_wiring import open_wallet, pem_certificates, reader_crls
        from wallet_sim import SeError  # no such phone, or its SE image unreadable
        from wallet_sim.consent import ConsentError, InteractiveConsent, RulesConsent
        from wallet_sim.wallet import OnlineRequestError

        console = make_console(stderr=True)
        if (request is None) == (qr is None):
            console.print("error: give the request (--request FILE|-|URI) or a picture of its QR code (--qr FILE), "
                          "one of the two", highlight=False, markup=False)
            raise typer.Exit(EXIT_UNUSABLE)
        if qr is not None:
            from wallet_sim.scan import ScanError, read_qr

            try:
                request = read_qr(qr)
            except ScanError as exc:
                console.print(f"error: {qr}: {exc}", highlight=False, markup=False, soft_wrap=True)
                raise typer.Exit(EXIT_UNUSABLE) from None
            if not _is_uri(request):
                console.print(f"error: {qr}: the QR code holds {request[:60]!r}, not a verifier's authorization "
                              "request (openid4vp://?client_id=...)", highlight=False, markup=False, soft_wrap=True)
                raise typer.Exit(EXIT_UNUSABLE)
        scanned = qr is not None or _is_uri(request)
        if consent is None and (request == "-" or not sys.stdin.isatty()):
            console.print("error: no --consent rules file and no terminal to ask the holder: pass --consent "
                          "FILE.json (e.g. {\"documents\": {\"*\": {\"*\": \"*\"}}})", highlight=False, markup=False)
            raise typer.Exit(EXIT_UNUSABLE)
        if scanned and (origin is not None or protocol is not None):
            console.print("error: --origin and --protocol are for a page's Digital Credentials API request; a "
                          "cross-device URI names its verifier itself", highlight=False, markup=False)
            raise typer.Exit(EXIT_UNUSABLE)
        if not scanned and origin is None:
            console.print("error: --origin: the web origin of the page that asks (a Digital Credentials API request "
                          "is bound to it)", highlight=False, markup=False)
            raise typer.Exit(EXIT_UNUSABLE)
        try:
            policy = RulesConsent.from_file(consent) if consent else InteractiveConsent(
                ask=lambda q: console.input(q), show=console.print)
            wallet = open_wallet(phone, None, policy, wrap=_wallet_trace, reader_trust_anchors=pem_certificates(reader_trust),
                                 reader_revocation=reader_crls(reader_crl),
                                 fault=fault)
            if scanned:
                done = wallet_cross_device(wallet, request)
                redirect = done.session.redirect
                # refused: the holder (or the consent rules) said no; not_held: the document has no such
                # element (or the wallet no such document) and nothing answered it. The verifier gets
                # both as errors. answered_by: an age_over_NN the document does not hold, answered by
                # the age_over_MM released in its place (ISO/IEC 18013-5 7.2.5): no error.
                released = [{"docType": e.doc_type, "released": {ns: sorted(ids) for ns, ids in e.released.items()},
                             "refused": {ns: sorted(ids) for ns, ids in e.refused.items()},
                             "not_held": {ns: sorted(ids) for ns, ids in e.not_held.items()},
                             "answered_by": {ns: dict(sorted(by.items())) for ns, by in e.answered_by.items()}}
                            for e in done.session.events if e.kind == "response" and e.doc_type]
                answer = {"answered": redirect.response_uri if redirect else None,
                          "client_id": redirect.client_id if redirect else None, "status": done.status,
                          "verifier": done.answer, "documents": released}
            else:
                text = sys.stdin.read() if request == "-" else Path(request).read_text(encoding="utf-8")
                chosen = pick_online_request(json.loads(text), protocol)
                answer = wallet.online(origin).respond(chosen)
        except (OnlineRequestError, PresentError, ConsentError, SeError, OSError, ValueError) as exc:
            console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_UNUSABLE) from None
        text = json.dumps(answer, ensure_ascii=False)
        if out is not None:
            out.write_text(text + "\n", encoding="utf-8")
        else:
            print(text)

    @app.command("verify")
    def verify_cmd(
        saved: Path = typer.Argument(..., help="A saved transcript (mcred present --save / reader --save-dir), or "
                                               "an IssuerSigned on its own (CBOR or base64url) to check as issued."),
        trust: list[Path] = typer.Option(..., "--trust", "--trust-anchor", help="IACA certificate (PEM; a bundle, as mcred export iaca writes it, gives each); repeatable. --trust-anchor is the same option, as mcred mdoc verify names it."),
        at: str | None = typer.Option(None, "--at", help="Verify as of this ISO time (default now)."),
        offline: bool = typer.Option(False, "--offline", help="Do not fetch status lists."),
        ds_crl: bool = typer.Option(False, "--ds-crl", help="Also check the IACA CRL for a revoked document signer (ds_revocation)."),
        portrait: Path | None = _PORTRAIT,
        age_over: list[str] = typer.Option([], "--age-over", help="An age_over_NN the request asked (NN or "
                                           "age_over_NN; at most two): report what each document says of it "
                                           "(ageOver: the element itself, or the age_over_MM in its place, "
                                           "ISO/IEC 18013-5 7.2.5), as the reader that asked did."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Verify a saved presentation with the full reader pipeline (status included); an IssuerSigned
        on its own gets every check but device authentication."""
        from mcred.present_saved import age_over_asked, verify_saved, with_age_over
        from mcred.present_wiring import reader_pipeline
        from reader.trust import TrustError

        console = make_console(stderr=as_json)
        try:
            asked = age_over_asked(age_over)
            data = saved.read_bytes()
            now = dt.datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
            if now is not None and now.tzinfo is None:
                now = now.replace(tzinfo=dt.UTC)
            pipeline = reader_pipeline(trust, offline=offline, ds_crl=ds_crl)
        except (OSError, ValueError, TrustError) as exc:
            _unusable(console, as_json, str(exc))
        _finish(console, with_age_over(verify_saved(data, pipeline, now=now), asked).to_json(), as_json, portrait)


def _wallet_trace(transmit):  # noqa: ANN001, ANN202 - the wallet's transmit, traced under --trace
    """Under ``mcred --trace``, each APDU pair the wallet app sends its SE (the device key's
    signatures), as the TSM's and the JPKI host's are shown."""
    from mcred.cli.phone_cmds import host_tracing

    return host_tracing(transmit, "mdoc")


def _is_uri(text: str) -> bool:
    """A scanned authorization request (``openid4vp://?...``, another wallet scheme, or an
    https link with a query), not a file name."""
    import re

    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text) is None or "?" not in text:
        return False
    try:
        return not Path(text).exists()
    except OSError:  # a name too long for a file: a URI
        return True
