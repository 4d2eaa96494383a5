"""``mcred demo``: the main job on embedded defaults, told as a story (issue 7 item 4).

Two phones are provisioned (JPKI signing + user-auth certificates with keys born in the
SE, and an mdoc; the second over the air, through GP SERAM), each presents to a reader (the first also by an NFC tap and online, to a web page), signs for a relying party and logs in to it
with its user-authentication certificate (利用者証明), the first is
handed over to a new phone (機種変更), and the reader and the OCSP relying party are shown
refusing the old phone while accepting the new one; the second phone is untouched until its
holder moves (異動), which an insurer's CRL watch sees, and the new address its consent
gives it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import wallet_sim
from issuer import handover as wf
from mcred.context import Context
from mcred.drills import HOLDER, Env
from mcred.handover_actions import HandoverActions, change_basic_four, mdoc_refusal
from mcred.provision import provision, refresh_mdocs
from mcred.timestamps import wait_clear_of_stamp
from protocols.cardsub import parse_holder
from tsm.jobs import Tsm

Say = Callable[[str], None]
SHOP = "https://shop.example"


def _over_the_air(ctx: Context, pid: str, person: dict, key_type: str):  # noqa: ANN202
    """Provision ``pid`` through a GP SERAM endpoint on a free local port, the phone's Local
    Agent in a thread (``mcred phone agent`` on the phone's machine)."""
    from mcred.ota import PhoneAgentThread, over_the_air, seram_endpoint

    with seram_endpoint("127.0.0.1:0") as endpoint:
        agent = PhoneAgentThread(endpoint.url, pid, ctx.home)
        r = over_the_air(endpoint.hub, pid, lambda transmit: provision(
            ctx, pid, parse_holder(person), key_type=key_type, mdoc_batch=1, transmit=transmit),
            on_session=agent.start)
        return r, agent.join()


def run_demo(ctx: Context, say: Say, *, key_type: str = "p384") -> dict:
    """Run the story; return the facts the narrative showed. Raises AssertionError if a
    phone is judged otherwise than the story says."""
    t_start = time.perf_counter()
    env = Env(ctx, key_type=key_type)
    say(f"Data directory {ctx.home} (SQLite), issuer public URL {ctx.public_url}; "
        f"status lists published with ttl {env.ttl} s, OCSP answered live.")

    people = [dict(HOLDER), dict(HOLDER, family_name="佐藤", family_name_kana="さとう",
                                  given_name="花子", given_name_kana="はなこ", sex=2)]
    phones, results = [], []
    for i, person in enumerate(people, 1):
        pid = ctx.new_phone()
        t0 = time.perf_counter()
        if i == 1:
            r = provision(ctx, pid, parse_holder(person), key_type=key_type, mdoc_batch=1)
            how = ""
        else:  # the way a TSM reaches a phone in the field: over the network
            r, agent = _over_the_air(ctx, pid, person, key_type)
            how = (f", over the air: the TSM's SCP03 session carried by GP SERAM over HTTP to the phone's "
                   f"Local Agent, {agent.apdus} APDUs in {agent.orders} polls, "
                   f"last word {agent.notifications[-1]!r}")
        phones.append(pid)
        results.append(r)
        first = Tsm(ctx.engine, ctx.master_key).job(r.job_id).results.get("open-session", {})
        met = {"11a": "the SE proved itself with its maker's certificate and the TSM with its own (SCP11a), the "
                      "factory keys were replaced under SCP11a's session keys, then an SCP03 session",
               "11b": "the SE proved itself with its maker's certificate (SCP11b) and its factory keys were "
                      "replaced under SCP11b's session keys, then an SCP03 session"}.get(first.get("scp"),
                                                                                         "SCP03 session")
        say(f"1.{i} Provisioned phone {pid} for {person['family_name']} {person['given_name']}: "
            f"{met}, keys generated in the SE, signing + user-auth certificates "
            f"({key_type}) and one mdoc written{how} ({time.perf_counter() - t0:.2f} s).")

    for i, r in enumerate(results, 1):
        response, st = env.present(r.phone_id)
        ok, why = env.reader_verdict(response, st)
        assert ok, why
        say(f"2.{i} Phone {r.phone_id} presents its mdoc; the reader checks the DS chain, MSO, "
            f"digests, device signature (made in the SE) and the status list: {why}.")
        if i == 1:
            ok, why = env.present_nfc(r.phone_id)
            assert ok, why
            say(f"    ... and by a tap on an NFC reader (ISO/IEC 18013-5 NFC engagement, static handover, and data "
                f"retrieval over NFC: ENVELOPE / GET RESPONSE to the wallet's HCE service): {why}.")
            by_ble = env.present_ble(r.phone_id)
            if by_ble is None:
                say("    ... (over Bluetooth LE too, with the ble extra: pip install 'mcred[ble]')")
            else:
                ok, why = by_ble
                assert ok, why
                say(f"    ... and by a tap that hands over to Bluetooth LE, as Annex D does (negotiated handover, "
                    f"mdoc central client mode on the reader's UUID, two Bluetooth hosts on a virtual radio): {why}.")
            ok, why = env.present_online(r.phone_id, SHOP)
            assert ok, why
            bad, relayed = env.present_online(r.phone_id, SHOP, via="https://shop.example.relay.test")
            assert not bad and relayed.startswith("session:"), relayed
            say(f"    ... and online, to the web page of {SHOP} through the Digital Credentials API "
                f"(ISO/IEC TS 18013-7 Annex C: the response sealed with HPKE for that origin): {why}; "
                "the same request relayed through another site is refused (session: the response "
                "does not open for the shop).")
            ok, why = env.present_online(r.phone_id, SHOP, protocol="openid4vp-v1-unsigned")
            assert ok, why
            bad, relayed = env.present_online(r.phone_id, SHOP, via="https://shop.example.relay.test",
                                              protocol="openid4vp-v1-unsigned")
            assert not bad and relayed.startswith("device_authentication:"), relayed
            say(f"    ... and with OpenID4VP 1.0 (a DCQL query, the answer a JWE to the shop's key): {why}; "
                "relayed through another site, the device signature is over that site's origin and "
                "fails device_authentication.")
            ok, why = env.present_cross_device(r.phone_id, SHOP)
            assert ok, why
            say(f"    ... and cross-device, from a counter PC without a wallet: the phone scans the shop page's "
                f"QR code (openid4vp://) and posts its answer to the shop's reader (direct_post.jwt, the device "
                f"signature over the shop's client_id and response_uri): {why}.")
            ok, why, told = env.present_second_edition(r.phone_id)
            assert ok, why
            say(f"    ... and to a second-edition reader (ISO/IEC 18013-5 DeviceRequest 1.1: one readerAuthAll "
                f"signature; an mDL or the card substitute, only under this issuer's IACA; age_over_21 or, in its "
                f"place, birth_date): {told}; {why}.")
            ok, why, told = env.present_to_revoked_reader(r.phone_id)
            assert not ok, "a reader whose certificate was revoked was answered"
            say(f"    ... and to a reader whose certificate its reader CA revoked (keyCompromise): the wallet holds "
                f"that CA's CRL, so the reader is {told}; a holder who answers trusted readers only gives it "
                f"nothing ({why}).")
        ok, why = env.rp_verdict(env.sign(r.phone_id, r.password))
        assert ok, why
        say(f"3.{i} Phone {r.phone_id} signs a document (CMS, key in the SE, password checked); "
            f"the relying party verifies the chain and asks OCSP: {why}.")
        if i == 1:
            stamped = env.sign(r.phone_id, r.password, timestamp=True)
            stamped_at = time.monotonic()
            ok, why = env.rp_verdict(stamped)
            assert ok, why
            say("    ... and signs a lease with a signature time-stamp from the issuer's TSA (RFC 3161, "
                "CAdES-T): the relying party verifies the time-stamp and judges the certificate at it.")
            # documents signed inside, where their extra is installed (None: it is not)
            for signed, verdict, missing, done in (
                    (env.sign_pdf(r.phone_id, r.password), env.rp_pdf_verdict,
                     "a contract PDF signed inside too, with the pdf extra: pip install 'mcred[pdf]'",
                     "signs a contract PDF inside it (PAdES: pyHanko writes the PDF, the SE signs); the relying "
                     "party finds the signature covers the whole file and verifies it the same way"),
                    (env.sign_xml(r.phone_id, r.password), env.rp_xml_verdict,
                     "an XML filing signed inside too, with the xml extra: pip install 'mcred[xml]'",
                     "signs an XML filing as e-Gov and e-Tax filings are signed (XAdES B-T: an enveloped signature "
                     "over the whole document, SignedInfo signed in the SE, then time-stamped); the relying party")):
                if signed is None:
                    say(f"    ... ({missing})")
                    continue
                ok, why = verdict(signed)
                assert ok, why
                say(f"    ... and {done}: {why}.")
        ok, why = env.login(r.phone_id, r.pin)
        assert ok, why
        say(f"    ... and logs in with its user-authentication certificate (利用者証明): the relying "
            f"party's challenge signed in the SE after the PIN, taken back once, OCSP asked: {why}.")

    old = results[0]
    captured = env.present(old.phone_id)
    old_cms = env.sign(old.phone_id, old.password)
    new = ctx.new_phone()
    actions = HandoverActions(ctx, key_type=key_type, mdoc_batch=1)
    wait_clear_of_stamp(stamped_at)  # else the handover's revocation could not be told from one before the lease
    t0 = time.perf_counter()
    hid = wf.create(ctx.sessions, kind="model_change", holder_id=old.holder_id,
                    old_phone_id=old.phone_id, new_phone_id=new, actor="demo", mdoc_refusal=mdoc_refusal(ctx),
                    jpki_key_type=key_type)
    h = actions.runner("demo").run(hid, stop_after="publish")
    steps = ", ".join(f"{k} {v['seconds']:.2f} s" for k, v in h.detail["timings"].items())
    say(f"4. Handover {old.phone_id} -> {new} (機種変更, reason cessationOfOperation): {steps}. "
        "The new phone's issuance revoked the old phone's credentials in the same transaction.")

    # the reader may hold the list it fetched in step 2 for up to its ttl
    while True:
        ok, reader_why = env.reader_verdict(*captured)
        if not ok or time.perf_counter() - t0 > env.ttl + 30:
            break
        time.sleep(0.05)
    reader_s = time.perf_counter() - t0
    assert not ok and "INVALID" in reader_why, reader_why
    say(f"5. The reader refuses the old phone's presentation {reader_s:.2f} s after the request "
        f"(its cached list had ttl {env.ttl} s): {reader_why}.")
    response, st = env.present(old.phone_id)
    ok, why = env.reader_verdict(response, st)
    assert not ok and "INVALID" in why, why
    ok, online_why = env.present_online(old.phone_id, SHOP)
    assert not ok and "INVALID" in online_why, online_why
    ok, cross_why = env.present_cross_device(old.phone_id, SHOP)
    assert not ok and "INVALID" in cross_why, cross_why
    ok, tap_why = env.present_nfc(old.phone_id)
    assert not ok and "INVALID" in tap_why, tap_why
    by_ble = env.present_ble(old.phone_id)
    assert by_ble is None or (not by_ble[0] and "INVALID" in by_ble[1]), by_ble
    say(f"    ... and online, the web page's reader too: {online_why}; cross-device and by an NFC tap "
        f"{'as well' if by_ble is None else 'over NFC and over Bluetooth LE as well'}.")
    ok, ocsp_why = env.rp_verdict(old_cms)
    assert not ok and "cessationOfOperation" in ocsp_why, ocsp_why
    ok, login_why = env.login(old.phone_id, old.pin)
    assert not ok and "cessationOfOperation" in login_why, login_why
    ok, lease_why = env.rp_revocation(stamped)
    assert ok and "after the signature's time-stamp" in lease_why, lease_why
    say(f"6. The relying party refuses the old phone's signature: {ocsp_why}; and its login: {login_why}. "
        f"The lease it signed with a time-stamp before the handover is still accepted: {lease_why}.")

    h = actions.runner("demo").run(hid)
    say(f"7. The TSM wiped the old phone's SE (wipe_old {h.detail['timings']['wipe_old']['seconds']:.2f} s); "
        "it has nothing left to present.")
    secret = actions.secrets[new].password
    response, st = env.present(new)
    ok, why = env.reader_verdict(response, st)
    assert ok, why
    ok2, why2 = env.rp_verdict(env.sign(new, secret))
    assert ok2, why2
    ok3, why3 = env.login(new, actions.secrets[new].pin)
    assert ok3, why3
    say(f"8. The new phone {new} is accepted: reader {why}, relying party {why2}, login {why3}.")
    other = results[1]
    response, st = env.present(other.phone_id)
    ok, why = env.reader_verdict(response, st)
    assert ok, why
    say(f"9. The other holder's phone {other.phone_id} was not disturbed: {why}.")
    before = env.present(new)
    refreshed = refresh_mdocs(ctx, new, actor="demo")
    # a second reader, which has not cached the list yet (it also checks the IACA CRL)
    ok_old, why_old = env.reader_verdict(*before, ds_crl=True)
    assert not ok_old and "INVALID" in why_old, why_old
    response, st = env.present(new)
    ok, why = env.reader_verdict(response, st)
    assert ok, why
    say(f"10. The new phone's MSOs are refreshed before they expire ({refreshed.rotated} new device "
        f"key(s) generated in its SE, {len(refreshed.issued)} new MSO(s), {refreshed.seconds:.2f} s): "
        f"it presents a fresh one, {why}; a reader refuses its previous MSO ({why_old}).")
    # the other holder moves: an insurer that holds her signed application watches her
    # signing certificate by CRL, and learns of the move at its next sweep
    ref = env.watch_signer(env.sign(other.phone_id, other.password))
    env.watch_verdict(ref)
    # ... and holds her consent to the latest basic four data service, signed in her SE
    from issuer.jpki import consents
    from mcred.jpki_flow import sign_with_se
    from protocols.jpki.consent import build_consent

    insurer = "ひまわり生命保険"
    document = build_consent(insurer, "保険金・年金のお支払いのため")
    p7s, _cert = sign_with_se(wallet_sim.open_secure_element(other.phone_id, ctx.home).transmit, "sign",
                              other.password.encode(), document)
    consent, _new = consents.register(ctx.sessions, document, p7s, relying_party=insurer, actor="demo")
    address = "大阪府大阪市北区中之島1-3-20"
    moved = change_basic_four(ctx, other.holder_id, {"address": address, "prefecture": "大阪府",
                                                     "municipality": "大阪市"},
                              reason="demo: 転居届", actor="demo", actions=HandoverActions(ctx, key_type=key_type))
    ok, watch_why = env.watch_verdict(ref)
    assert not ok and "superseded" in watch_why, watch_why
    ok, login_why = env.login(other.phone_id, other.pin)
    assert ok, login_why
    ok, sign_why = env.rp_verdict(env.sign(other.phone_id, other.password))
    assert ok, sign_why
    response, st = env.present(other.phone_id)
    ok, why = env.reader_verdict(response, st)
    assert ok, why
    latest = consents.latest_basic_four(ctx.sessions, consent.id, relying_party=insurer, actor="demo")
    assert latest["changed"] == ["address"] and latest["basic_four"]["address"] == address, latest
    say(f"11. The other holder moves to Osaka (異動, {sum(moved['steps'].values()):.2f} s): her signing "
        f"certificate, which carries her address, is superseded and re-issued with the new one on a new key "
        f"in the SE, her mdoc re-issued; an insurer sweeping the CRL for its customers' certificates sees "
        f"{watch_why}, and with the consent she signed in her SE (最新の利用者情報提供) it learns what changed: "
        f"{', '.join(latest['changed'])}, now {latest['basic_four']['address']}. Her user-authentication "
        f"certificate is kept: login {login_why}; she signs ({sign_why}) and presents ({why}) with the new data.")
    child = _child(ctx, env, key_type)
    child_phone, child_why, child_age = child
    say(f"12. Her son, aged 10, gets a phone too ({child_phone}): the user-authentication certificate and "
        f"the mdoc, no signing certificate: {child_why}. He logs in (good) and presents (VALID, "
        f"age_over_18 false); a reader asking age_over_21, which his card substitute does not carry, gets the "
        f"nearest that answers it and reads: {child_age}; asked to sign, the phone says it holds no signing key, "
        "no try spent.")
    total = time.perf_counter() - t_start
    say(f"Done in {total:.1f} s.")
    return {"phones": phones, "new_phone": new, "handover": hid, "reader_refused_after_s": reader_s,
            "child_phone": child_phone, "seconds": total}


def _child(ctx: Context, env: Env, key_type: str) -> tuple[str, str, str]:
    """A holder under 15 provisioned: what is issued to them and what is not, and what a
    reader asking age_over_21 reads (step 12)."""
    from mcred.jpki_flow import NoSigningCertificateError
    from protocols.birthdays import today_in_japan

    today = today_in_japan(dt.datetime.now(dt.UTC))
    born = dt.date(today.year - 11, today.month, 1) + dt.timedelta(days=40)  # 10 on any day of the year
    child = dict(HOLDER, family_name="佐藤", family_name_kana="さとう", given_name="次郎",
                 given_name_kana="じろう", birth_date=born.isoformat())
    pid = ctx.new_phone()
    r = provision(ctx, pid, parse_holder(child), key_type=key_type, mdoc_batch=1)
    assert r.sign_certificate is None and r.sign_withheld, r
    ok, why = env.login(pid, r.pin)
    assert ok, why
    response, st = env.present(pid)
    verdict = env.reader.verify(response, session_transcript=st)
    assert verdict.valid, verdict.failed()
    ages = {ns: items["age_over_18"] for d in verdict.documents for ns, items in d.elements.items()
            if "age_over_18" in items}
    assert ages and not any(ages.values()), ages  # in our namespace and the ISO one it mirrors
    ok, age_read = env.present_age_over(pid, 21)  # ISO/IEC 18013-5 7.2.5: age_over_20 = false in its place
    assert ok and age_read.startswith("the holder is under 21 (answered by age_over_20 = false"), age_read
    try:
        env.sign(pid, "NOPASSWORD1")
    except NoSigningCertificateError:
        pass
    else:
        raise AssertionError("a phone without a signing key signed")
    return pid, r.sign_withheld, age_read

