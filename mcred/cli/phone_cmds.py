"""``mcred phone new|list|show|reset|pcsc|ble``: simulated phones and their secure elements.

``--trace`` (global) is honoured by the TSM's transports, built with
:func:`tracing_transport` below, which every command that talks to an SE uses.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import typer
from cryptography import x509

import wallet_sim
import wallet_sim.pcsc
from mcred.cli.state import OPTIONS, out_path
from mcred.cli.text import print_tree
from mcred.home import data_home
from tsm.trace import guarded, trace_plain, tracing_transmit


def stderr_sink() -> Callable[[str], None]:
    """Where ``--trace`` lines go: standard error, each line flushed, and nowhere once it cannot
    be written (:func:`tsm.trace.guarded`: a trace piped into ``head`` must not stop a job)."""
    return guarded(lambda line: print(line, file=sys.stderr, flush=True))


def tracing_transport(transmit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``transmit`` wrapped to print every wire APDU pair to stderr when ``--trace``."""
    if not OPTIONS.trace:
        return transmit
    return tracing_transmit(transmit, stderr_sink())


def trace_sink() -> Callable[[str], None] | None:
    """The sink for the TSM's plain APDU pairs under ``--trace`` (else None)."""
    return stderr_sink() if OPTIONS.trace else None


def tsm_tracing(home: Path, phone_id: str, transmit: Callable[[bytes], bytes] | None = None) -> dict:
    """A TSM job's ``trace`` and ``transmit`` under ``--trace``: its plain pairs and the wire
    pairs (the phone's SE here, or ``transmit``: over the air, the SERAM link, still
    pipelining) to stderr, as ``gp -d`` shows them. Otherwise just ``transmit``."""
    if not OPTIONS.trace:
        return {"transmit": transmit}
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, home).transmit
    return {"trace": trace_sink(), "transmit": tracing_transport(transmit)}


#: INS codes whose command data is a PIN, password or PUK: traced as a length only.
_SECRET_INS = {0x20, 0x24, 0x2C}


def _pcsc_transport(transmit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``transmit`` that, under ``--trace``, prints each APDU pair a PC/SC application sends,
    hiding the data of VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER."""
    return host_tracing(transmit, "pcsc ")


def host_tracing(transmit: Callable[[bytes], bytes], label: str) -> Callable[[bytes], bytes]:
    """``transmit`` that, under ``--trace``, prints each APDU pair an application on the
    phone's host sends its SE (``label``: who, five characters: ``pcsc``, ``jpki``), the data
    of VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER as a length only; else
    ``transmit`` itself."""
    if not OPTIONS.trace:
        return transmit

    out = stderr_sink()

    def sink(line: str) -> None:
        out(line.replace("plain", label[:5].ljust(5), 1))

    def traced(apdu: bytes) -> bytes:
        resp = transmit(apdu)
        secret = len(apdu) > 5 and apdu[1] in _SECRET_INS
        trace_plain(sink, apdu, resp, secret=secret)
        return resp

    return traced


def _parse_atr(value: str) -> bytes:
    if value in wallet_sim.pcsc.NAMED_ATRS:
        return wallet_sim.pcsc.NAMED_ATRS[value]
    try:
        atr = bytes.fromhex(value.replace(" ", "").replace(":", ""))
    except ValueError:
        atr = b""
    if not 2 <= len(atr) <= 33 or atr[0] not in (0x3B, 0x3F):
        raise typer.BadParameter(f"{value!r} is neither {'/'.join(wallet_sim.pcsc.NAMED_ATRS)} "
                                 "nor an ATR in hex (2-33 bytes starting 3B or 3F)")
    return atr


_SIZE = re.compile(r"([0-9]{1,9})\s*(|K|KIB|M|MIB)", re.IGNORECASE)


def _parse_nvm(value: str) -> int:
    """``--nvm``: bytes, or KiB / MiB with a K or M suffix, within the SE's bounds."""
    from wallet_sim.se.store import NVM_MAX, NVM_MIN

    m = _SIZE.fullmatch(value.strip())
    size = int(m[1]) * {"": 1, "k": 1024, "kib": 1024, "m": 1 << 20, "mib": 1 << 20}[m[2].lower()] if m else -1
    if not NVM_MIN <= size <= NVM_MAX:
        raise typer.BadParameter(f"{value!r} is not a size of {NVM_MIN} bytes to {NVM_MAX >> 20}M "
                                 "(bytes, or with K or M: 64K, 1M)")
    return size


def _fail(msg: str, as_json: bool = False, code: int = 2) -> None:
    """A phone that is not there, or whose SE cannot be read: unusable input, exit 2 as
    every other command says it (``mcred present --phone``, ``mcred jpki ...``); with
    ``--json`` as JSON on stdout (:func:`mcred.cli.text.fail`)."""
    from mcred.cli.text import fail

    raise fail(msg, as_json, code)


def register(app: typer.Typer) -> None:
    phone = typer.Typer(help="Simulated phones and their GP secure elements.", no_args_is_help=True)
    app.add_typer(phone, name="phone")

    @phone.command("new")
    def new(model: str = typer.Option("mcred-sim-1", "--model", help="Phone model name."),
            nvm: str = typer.Option("1M", "--nvm", callback=_parse_nvm,
                                    help="The SE's non-volatile memory: bytes, or with K / M (KiB, MiB), "
                                    "2K..64M. A command that needs more is refused with 6A84."),
            scp11a: bool = typer.Option(True, "--scp11a/--no-scp11a",
                                        help="The SE's issuer names this data directory's TSM as the OCE that may "
                                        "load keys (SCP11a; the SE then loads no key under SCP11b). "
                                        "--no-scp11a: an SE that offers SCP11b only."),
            kloc: Path | None = typer.Option(None, "--kloc", exists=True, dir_okay=False,
                                             help="The KLOC CA certificate (PEM) of the TSM that may load keys, "
                                             "when it is another data directory's (its `mcred tsm oce-ca`); "
                                             "default: this data directory's TSM."),
            as_json: bool = typer.Option(False, "--json", help="Print {\"id\": ...}.")) -> None:
        """Make a phone with a factory-fresh SE (keyset 30 = the GP test key; SCP11a and
        SCP11b keys certified by the data directory's SE maker, and the CA key of the TSM
        allowed to load keys)."""
        from mcred.context import ConfigError, Context

        ca = None
        if kloc is not None:
            try:
                ca = x509.load_pem_x509_certificate(kloc.read_bytes())
            except ValueError as exc:
                _fail(f"--kloc {kloc}: not a PEM certificate ({exc})", as_json)
        try:
            pid = Context.open(data_home()).new_phone(scp11a=scp11a, kloc=ca, model=model, nvm_bytes=nvm)
        except ConfigError as exc:
            _fail(f"--kloc {kloc}: {exc}", as_json)
        typer.echo(json.dumps({"id": pid}) if as_json else pid)

    @phone.command("maker-root")
    def maker_root() -> None:
        """Print the certificate (PEM) of the SE maker that certified this data directory's
        phones: what a TSM elsewhere is told to trust (MCRED_SE_MAKER_ROOTS) before it
        meets them over the air."""
        from wallet_sim.se.maker import root_path

        path = root_path(data_home())
        if not path.is_file():
            _fail(f"no SE maker in {data_home()} yet: `mcred phone new` makes it with the first phone")
        typer.echo(path.read_text(), nl=False)

    @phone.command("list")
    def list_(long: bool = typer.Option(False, "--long", "-l", help="A line per phone: its model, its SE's "
                                        "life cycle and applets, any blocked PIN, and the issuer's view (state, "
                                        "holder, live credentials); with --json an object per phone."),
              as_json: bool = typer.Option(False, "--json", help="A JSON array of the ids (of objects with "
                                           "--long).")) -> None:
        """The phones in the data directory, one id a line (--long: what each holds and whose
        it is)."""
        ids = wallet_sim.list_phones(data_home())
        if not long:
            if as_json:
                typer.echo(json.dumps(ids))
            else:
                for pid in ids:
                    typer.echo(pid)
            return
        rows = _phone_rows(ids)
        if as_json:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        from reader.text import printable

        for r in rows:  # the id first and whole, to be copied
            if "error" in r:
                typer.echo(printable(f"{r['id']}  unreadable: {r['error']}"))
                continue
            se = r["secure_element"]
            blocked = [f"{a}:{name}" for a, names in se["blocked"].items() for name in names]
            issuer = r["issuer"]
            whose = ("not provisioned by this issuer" if issuer is None else
                     f"{issuer['state']}, {issuer['holder_name'] or '-'}, {issuer['live']} live credential(s)"
                     + "".join(f", {slot} to renew (`mcred jpki renew --phone {r['id']} --slot {slot}`)"
                               for slot in issuer["renewal_needed"])
                     + (f", signing certificate to issue (`mcred jpki issue-sign --phone {r['id']}`)"
                        if issuer["sign_issue_needed"] else ""))
            typer.echo(printable(f"{r['id']}  {r['model']}  SE {se['card_life_cycle']}, "
                                 f"applets: {', '.join(se['applets']) or 'none'}"
                                 + (f", BLOCKED {', '.join(blocked)}" if blocked else "") + f"  {whose}"))
        if not rows:
            typer.echo(f"no phone in {data_home()}")

    @phone.command("show")
    def show(phone_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
        """CPLC, security domains and keysets, applets and life cycles, PIN counters,
        certificates held (public facts only)."""
        try:
            info = wallet_sim.describe(phone_id, data_home())
        except wallet_sim.SeError as exc:
            _fail(str(exc), as_json)
        if as_json:
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        print_tree(info)

    @phone.command("agent")
    def agent(phone_id: str = typer.Argument(None, help="The simulated phone (none with --pcsc-reader)."),
              remote: str = typer.Option(..., "--remote", help="The TSM's GP SERAM endpoint, e.g. "
                                         "http://127.0.0.1:8472/gp/seram (what `mcred provision "
                                         "--over-the-air` prints)."),
              session: str = typer.Option(..., "--session", help="The management session's id, as the "
                                          "TSM handed it to the phone's device application."),
              pcsc_reader: str = typer.Option(None, "--pcsc-reader", help="Forward the C-APDUs to the card "
                                              "in this PC/SC reader (a name's part or an index) instead of "
                                              "a simulated phone: a development SE, or a phone bridged by "
                                              "`mcred phone pcsc` (pip install '.[nfc]')."),
              as_json: bool = typer.Option(False, "--json", help="Print the session's summary as JSON."),
              ) -> None:
        """Let a TSM manage this phone's SE over the air: the phone's GP SERAM Local Agent
        polls the Remote Agent and forwards its C-APDUs to the SE until the Stop command
        (specs/tsm.md, "Over the air")."""
        import contextlib

        from wallet_sim.seram_agent import (
            LocalAgentError,
            run_local_agent,
            secure_element_by_cplc,
            secure_element_of,
        )

        if not remote.startswith(("http://", "https://")):
            _fail(f"--remote {remote!r} is not an http(s) URL", as_json)
        if (phone_id is None) == (pcsc_reader is None):
            _fail("give a phone id, or --pcsc-reader for a card in a PC/SC reader", as_json)

        def event(kind: str, text: str) -> None:
            if kind == "apdu" or (as_json and kind != "retry"):  # a retry is said on stderr with --json too
                return
            typer.echo({"start": f"session {text} started by the TSM",
                        "notification": f"TSM: {text}", "stop": "the TSM ended the session"}.get(kind, text), err=True)

        with contextlib.ExitStack() as stack:
            if pcsc_reader is not None:
                from reader.pcsc import PcscError, tapped

                try:
                    card = stack.enter_context(tapped(pcsc_reader, wait=10))
                except PcscError as exc:
                    _fail(str(exc), as_json)
                transmit, where = card.transmit, f"the card in {card.reader}"
                try:
                    ref = secure_element_by_cplc(transmit)
                except LocalAgentError as exc:
                    _fail(f"{where}: {exc}", as_json)
            else:
                try:
                    se = wallet_sim.open_secure_element(phone_id, data_home())
                except wallet_sim.SeError as exc:
                    _fail(str(exc), as_json)
                transmit, where, ref = se.transmit, f"phone {phone_id}", secure_element_of(se)
            if not as_json:
                typer.echo(f"{where}: {ref.se_type} {ref.se_id} -> {remote} (session {session})", err=True)
            try:
                result = run_local_agent(remote, session, tracing_transport(transmit), ref, on_event=event)
            except LocalAgentError as exc:
                _fail(str(exc), as_json, 1)
        if as_json:
            typer.echo(json.dumps(result.summary(), ensure_ascii=False))
        else:
            typer.echo(f"{result.apdus} APDUs in {result.orders} orders, {result.seconds:.2f} s; "
                       f"last word: {result.notifications[-1] if result.notifications else '-'}")
        failed = any("/stopped/" in n for n in result.notifications[-1:])
        raise typer.Exit(1 if failed else 0)

    @phone.command("reset")
    def reset(phone_id: str,
              as_json: bool = typer.Option(False, "--json", help="Print {\"phone\": ..., \"reset\": true}.")) -> None:
        """Factory reset: wipes the phone's app data; the SE keeps its content."""
        try:
            wallet_sim.factory_reset(phone_id, data_home())
        except wallet_sim.SeError as exc:
            _fail(str(exc), as_json)
        typer.echo(json.dumps({"phone": phone_id, "reset": True}) if as_json
                   else f"{phone_id}: app data wiped; the secure element is untouched")

    @phone.command("ble")
    def ble(phone_id: str = typer.Argument(..., help="The phone."),
            hci: str = typer.Option(..., "--hci", help="The phone's Bluetooth controller, an HCI transport as bumble names it: tcp-client:127.0.0.1:9100 for a port of `mcred ble radio`, usb:0 for a USB dongle."),
            consent: Path | None = typer.Option(None, "--consent", help="The wallet's consent rules (JSON); without them the holder is asked at the terminal."),
            mode: str = typer.Option("peripheral", "--mode", help="What the QR code offers: peripheral (mdoc peripheral server mode: the phone advertises and serves) or central (mdoc central client mode: the phone scans for the reader and checks its Ident)."),
            qr: Path | None = typer.Option(None, "--qr", help="Also write the engagement QR code as PNG."),
            wait: int = typer.Option(60, "--wait", min=1, max=3600, help="Seconds to wait for a reader."),
            fault: str | None = typer.Option(None, "--fault", help="A hostile phone on purpose (`mcred wallet faults`)."),
            snoop: Path | None = typer.Option(None, "--snoop", callback=out_path, help="Write the phone's Bluetooth HCI traffic to this file for Wireshark: btsnoop (as Android's btsnoop_hci.log), or pcap when it ends in .pcap."),
            as_json: bool = typer.Option(False, "--json", help="Print the engagement as one JSON line first ({\"engagement\": URI}), then one JSON object for the outcome.")) -> None:
        """Show the phone's QR code offering data retrieval over BLE and answer one reader
        (`mcred reader ble --hci ... --engagement URI`, or any ISO 18013-5 reader on the same
        radio); exit 0 once a reader was answered, 1 if none came or the link failed."""
        import blelink
        from mcred.present_ble import phone_over_ble
        from mcred.present_wiring import open_wallet
        from wallet_sim.consent import ConsentError, InteractiveConsent, RulesConsent

        try:
            blelink.require()
        except blelink.LinkError as exc:
            _fail(str(exc), as_json)
        if mode not in ("peripheral", "central"):
            _fail(f"--mode {mode!r}: peripheral or central", as_json)
        try:
            if consent is not None:
                policy = RulesConsent.from_file(consent)
            elif sys.stdin.isatty():
                policy = InteractiveConsent(ask=typer.prompt, show=typer.echo)
            else:
                raise ConsentError("no --consent rules and no terminal to ask the holder")
            wallet = open_wallet(phone_id, data_home(), policy, fault=fault)
        except (wallet_sim.SeError, ConsentError, OSError, ValueError) as exc:
            _fail(str(exc), as_json)

        def show(engagement) -> None:  # noqa: ANN001 - wallet_sim.engagement.Engagement
            if qr is not None:
                engagement.save_png(qr)
            if as_json:
                typer.echo(json.dumps({"engagement": engagement.uri}))
            else:
                typer.echo(engagement.terminal())
                typer.echo(engagement.uri)
                typer.echo(f"{phone_id}: waiting up to {wait} s for a reader over BLE ({mode} mode)")

        transfer = phone_over_ble(wallet, hci, mode=mode, on_engagement=show, timeout=float(wait), snoop=snoop)
        session = transfer.session
        answered = session is not None and session.device_response is not None
        if as_json:
            typer.echo(json.dumps({"answered": answered, "problem": transfer.problem, "steps": transfer.steps,
                                   "events": [e.kind + ": " + e.detail for e in session.events] if session else []},
                                  ensure_ascii=False))
        else:
            for step in transfer.steps:
                typer.echo(f"  {step}")
            for e in session.events if session else []:
                typer.echo(f"  wallet {e.kind}: {e.detail}")
            if transfer.problem:
                typer.echo(f"{phone_id}: {transfer.problem}", err=True)
        raise typer.Exit(0 if answered else 1)

    @phone.command("pcsc")
    def pcsc(phone_id: str,
             host: str = typer.Option(wallet_sim.pcsc.DEFAULT_HOST, "--host",
                                      help="Where vpcd (pcscd's virtual reader) listens."),
             port: int = typer.Option(wallet_sim.pcsc.DEFAULT_PORT, "--port", min=1, max=65535,
                                      help="vpcd's port (CHANNELID in /etc/reader.conf.d/vpcd)."),
             atr: str = typer.Option("phone", "--atr",
                                     help="'phone' (3B 80 80 01 01, OpenSC probes with SELECT), "
                                          "'jpki-card' (the card's contact ATR) or hex."),
             once: bool = typer.Option(False, "--once",
                                       help="Serve one vpcd connection, then exit."),
             wallet: bool = typer.Option(True, "--wallet/--no-wallet",
                                         help="Also answer an mdoc reader's tap with the wallet (NFC "
                                              "engagement and data retrieval, ISO/IEC 18013-5 8.2.2.1 / "
                                              "8.3.3.1.2), routed by AID as a phone's NFC controller does."),
             consent: Path | None = typer.Option(None, "--consent",
                                                 help="The wallet's consent rules (JSON); default: ask "
                                                      "here, or no wallet without a terminal."),
             tap: bool = typer.Option(False, "--tap",
                                      help="Tap, do not stay: the phone leaves the reader after each "
                                           "reading (the first power-off after APDUs) and comes back "
                                           "--tap-gap seconds later, as at a counter."),
             tap_gap: float = typer.Option(1.0, "--tap-gap", min=0.5, max=3600,
                                           help="With --tap: seconds out of the reader between taps (0.5 "
                                                "at least: pcscd looks at vpcd's reader every 0.4 s, and "
                                                "an absence it never saw is no tap for any PC/SC reader)."),
             handover: str = typer.Option("static", "--handover",
                                          help="The wallet's NFC engagement: static (a Handover Select in "
                                               "its NDEF file) or negotiated (TNEP: the reader writes its "
                                               "Handover Request first)."),
             reader_trust: list[Path] = typer.Option([], "--reader-trust",
                                                     help="A reader CA (PEM) the wallet trusts for readerAuth / "
                                                          "readerAuthAll (`mcred reader certificate` makes one); "
                                                          "the holder sees such a reader as verified. Repeatable."),
             reader_crl: list[str] = typer.Option([], "--reader-crl",
                                                  help="A reader CA's CRL (DER or PEM file, or an http(s) URL "
                                                       "fetched now) the wallet holds: a reader certificate it "
                                                       "lists, or whose CA has no current list here, is not "
                                                       "trusted (`mcred reader crl`). Repeatable."),
             fault: str | None = typer.Option(None, "--fault",
                                              help="A hostile phone on purpose: its wallet makes this fault in "
                                                   "what it presents, for checking that a reader refuses it "
                                                   "(`mcred wallet faults`); all: tap after tap, an honest "
                                                   "phone, then each fault in turn (with --tap, each is said "
                                                   "as the tap begins)."),
             ble_hci: str | None = typer.Option(None, "--ble-hci",
                                                help="Also offer data retrieval over Bluetooth LE in the NFC "
                                                     "engagement, on this HCI transport (tcp-client:127.0.0.1:9100 "
                                                     "for `mcred ble radio`, usb:0 for a dongle): after each tap "
                                                     "the phone starts its BLE side, and a reader that takes BLE "
                                                     "goes on there."),
             ble_mode: str = typer.Option("peripheral", "--ble-mode",
                                          help="With --ble-hci: peripheral (mdoc peripheral server mode) or "
                                               "central (mdoc central client mode)."),
             ble_wait: float = typer.Option(30.0, "--ble-wait", min=1, max=3600,
                                            help="With --ble-hci: seconds the BLE side waits for the reader."),
             reader_crl_refresh: float = typer.Option(3600.0, "--reader-crl-refresh", min=1, max=86400,
                                                      help="With --reader-crl: take the lists again every so "
                                                           "many seconds, in the background (a list that cannot "
                                                           "be had keeps the old ones, which fail closed once "
                                                           "out of date).")
             ) -> None:
        """Put the phone in pcscd's virtual reader (vsmartcard vpcd): PC/SC applications such
        as OpenSC then reach its secure element, and an mdoc reader (`mcred reader nfc`) its
        wallet, over NFC, or handed over to BLE with --ble-hci. Stop with Ctrl-C."""
        from mcred.present_wiring import open_wallet, pem_certificates, reader_crls
        from wallet_sim.consent import ConsentError, InteractiveConsent, RulesConsent
        from wallet_sim.nfc import WALLET_AIDS, AidRouter, NfcTag

        home = data_home()
        atr_bytes = _parse_atr(atr)
        if handover not in ("static", "negotiated"):
            _fail(f"--handover {handover!r}: static or negotiated")
        if ble_mode not in ("peripheral", "central"):
            _fail(f"--ble-mode {ble_mode!r}: peripheral or central")
        if ble_hci is not None:
            import blelink

            try:
                blelink.require()
            except blelink.LinkError as exc:
                _fail(str(exc))
            if not wallet:
                _fail("--ble-hci is the wallet's: not with --no-wallet")
        from wallet_sim.faults import FAULTS, FaultError
        from wallet_sim.faults import fault as named_fault

        try:
            named_fault(None if fault == "all" else fault)
        except FaultError as exc:
            _fail(f"{exc}, or all")
        if fault is not None and not wallet:
            _fail("--fault is the wallet's: not with --no-wallet")
        try:
            anchors = pem_certificates(reader_trust)
        except (OSError, ValueError) as exc:
            _fail(f"--reader-trust: {exc}")
        try:
            revocation = reader_crls(reader_crl)
        except (OSError, ValueError) as exc:
            _fail(f"--reader-crl: {exc}")
        # --fault all: tap after tap, honest first, then each fault (replay twice: the first
        # time it presents genuinely, and keeps that Document to repeat)
        cycle = [None, *(n for n in FAULTS for _ in range(2 if n == "replay" else 1))] if fault == "all" else [fault]
        turn = {"index": 0, "tag": None, "said": -1}  # the cycle moves on once a tap has presented
        try:
            wallet_sim.open_secure_element(phone_id, home)
        except wallet_sim.SeError as exc:
            _fail(str(exc))
        policy = None
        if wallet:
            try:
                if consent is not None:
                    policy = RulesConsent.from_file(consent)
                elif sys.stdin.isatty():
                    policy = InteractiveConsent(ask=typer.prompt, show=typer.echo)
            except (ConsentError, OSError, ValueError) as exc:
                _fail(f"--consent: {exc}")

        def insert() -> Callable[[bytes], bytes]:
            se = wallet_sim.open_secure_element(phone_id, home)
            if policy is None:
                return _pcsc_transport(se.transmit)
            last = turn["tag"]
            if last is not None and last.session is not None and last.session.device_response is not None:
                turn["index"] += 1
            name = cycle[turn["index"] % len(cycle)]
            if fault == "all" and turn["said"] != turn["index"]:
                turn["said"] = turn["index"]
                say("next tap: an honest phone (a reader must find it VALID)" if name is None else
                    f"next tap: fault {name} (a reader must fail {FAULTS[name].refused_by})")
            ble_side = None
            if ble_hci is not None:
                from protocols.mdoc import ble as ble_protocol

                ble_side = ble_protocol.BleOptions.new(peripheral=ble_mode == "peripheral",
                                                       central=ble_mode == "central")
            tag = NfcTag(open_wallet(phone_id, home, policy, fault=name, reader_trust_anchors=anchors,
                                     reader_revocation=revocation),
                         handover=handover, ble_options=ble_side,
                         on_offer=(lambda t: start_ble(t, name)) if ble_hci else None)  # a tap: a new activation
            turn["tag"] = tag
            router = AidRouter(se.transmit, {aid: tag.transmit for aid in WALLET_AIDS})
            return _pcsc_transport(router.transmit)

        def say(line: str) -> None:
            typer.echo(f"{phone_id}: {line}")

        if revocation is not None:
            def refresh_lists() -> None:
                while not stop_refresh.wait(reader_crl_refresh):
                    if not revocation.refresh():
                        say(f"reader CA lists not taken again: {revocation.last_error}; the held ones stay")

            stop_refresh = threading.Event()
            threading.Thread(target=refresh_lists, name="reader-crls", daemon=True).start()

        ble_thread: list[threading.Thread] = []

        def start_ble(tag, name: str | None) -> None:  # noqa: ANN001 - a wallet_sim.nfc.NfcTag
            """The phone's BLE side for this tap's engagement, in the background, as a phone
            starts advertising (or scanning) once it offered BLE; one at a time (one radio)."""
            if tag.ble_selected is None or not tag.ble_selected.modes():
                return
            if ble_thread and ble_thread[-1].is_alive():
                say("BLE: still busy with the last tap's reader; this tap's engagement is not served over BLE")
                return
            from mcred.present_ble import phone_over_ble

            mode = "central" if not tag.ble_selected.peripheral_server else "peripheral"

            def run() -> None:
                transfer = phone_over_ble(
                    open_wallet(phone_id, home, policy, fault=name, reader_trust_anchors=anchors,
                                reader_revocation=revocation), ble_hci,
                    mode=mode, engagement=tag.engagement, options=tag.ble_selected, timeout=ble_wait)
                answered = transfer.session is not None and transfer.session.device_response is not None
                say(f"BLE ({mode} mode): " + ("answered the reader" if answered else
                                              f"no reader served ({transfer.problem or 'nothing asked'})"))

            say(f"BLE: mdoc {mode} mode side started for this tap's engagement on {ble_hci}")
            ble_thread.append(threading.Thread(target=run, name="ble", daemon=True))
            ble_thread[-1].start()

        stop = threading.Event()
        old = {sig: signal.signal(sig, lambda *_: stop.set())
               for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            say(f"bridging the secure element to vpcd at {host}:{port} (Ctrl-C stops)")
            if wallet:
                say(f"the wallet answers mdoc readers (NFC engagement, {handover} handover; AIDs D2760000850101 "
                    "and A0000002480400)"
                    if policy is not None else
                    "no wallet on NFC: no --consent rules and no terminal to ask the holder")
            wallet_sim.pcsc.serve(insert, host=host, port=port, atr=atr_bytes, once=once,
                                  say=say, stop=stop, tap=tap, **({"retry_interval": tap_gap} if tap else {}))
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        say("stopped")


def _phone_rows(ids: list[str]) -> list[dict]:
    """``mcred phone list --long``: each phone's model, its SE's card life cycle, applets
    (by name) and blocked PINs, from the wallet simulator; the issuer's view of it
    (:func:`issuer.holders.phone_summaries`, None for a phone it never provisioned) from the
    registry. A phone whose files cannot be read is a row with its ``error``, not a failure
    of the listing."""
    from issuer.holders import phone_summaries
    from mcred.cli.state import open_context

    issuer = phone_summaries(open_context().sessions, ids) if ids else {}
    rows: list[dict] = []
    for pid in ids:
        try:
            info = wallet_sim.describe(pid, data_home())
        except (wallet_sim.SeError, OSError) as exc:
            rows.append({"id": pid, "error": str(exc), "issuer": issuer.get(pid)})
            continue
        se = info["secure_element"]
        applets, blocked = [], {}
        for a in se.get("applets", []):
            details = a.get("details") or {}
            name = details.get("applet") or a["aid"]
            applets.append(name)
            pins = [k for k, v in (details.get("secrets") or {}).items() if isinstance(v, dict) and v.get("blocked")]
            if pins:
                blocked[name] = pins
        rows.append({"id": pid, "model": info["model"],
                     "secure_element": {"card_life_cycle": se["card_life_cycle"], "applets": applets,
                                        "blocked": blocked},
                     "issuer": issuer.get(pid)})
    return rows


