"""``mcred doctor``: what this installation and this machine can do, and how to get the rest.

mcred runs on embedded defaults (SQLite, file keys, simulated phones) with nothing else
installed; several of its integrations need outside software. Each check below says
whether it is there, what it enables, and the command that installs it. Nothing is
changed by running it (the data directory is opened, and its database migrated, as every
command does).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
VPCD_DRIVERS = (Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so"),)
OPENSC_PKCS11 = (Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
                 Path("/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so"), Path("/usr/lib/opensc-pkcs11.so"))


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    #: What it enables.
    enables: str
    #: How to get it when missing ("" when there is nothing to install).
    fix: str = ""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def _first(paths: tuple[Path, ...]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _database(ctx) -> Finding:  # noqa: ANN001
    from mcred.db import DatabaseUnavailable, SchemaError
    from mcred.health import check_database, check_schema

    try:
        ctx.engine  # noqa: B018 - opened (and migrated) here, so that a failure is said as what it is
        dialect = check_database(ctx)
    except SchemaError as exc:  # opened but cannot be migrated: what is wrong, how to recover
        return Finding("database", False, exc.problem, "everything", exc.recovery)
    except DatabaseUnavailable as exc:  # not opened at all: the URL (password hidden) and the server's answer
        return Finding("database", False, str(exc), "everything",
                       "check MCRED_DATABASE_URL (default: SQLite in the data directory)")
    except Exception as exc:  # noqa: BLE001 - reported
        return Finding("database", False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
                       "everything", "check MCRED_DATABASE_URL (default: SQLite in the data directory)")
    try:
        check_schema(ctx)
    except Exception as exc:  # noqa: BLE001 - reported
        return Finding("database", False, f"{dialect}, {exc}", "everything",
                       "run any mcred command (it migrates)")
    return Finding("database", True, f"{dialect}, schema current", "everything")


def _public_url() -> Finding:
    from mcred.context import ConfigError, public_url

    try:
        url = public_url()
    except ConfigError as exc:
        return Finding("public URL", False, str(exc), "the URLs in every credential and certificate "
                       "(status lists, CRLs, OCSP)", "set MCRED_PUBLIC_URL to the issuer's http(s) base URL")
    return Finding("public URL", True, url, "the URLs in every credential and certificate (status lists, CRLs, OCSP)")


def _key_store(ctx, name: str, check, setting: str, enables: str, fix: str) -> Finding:  # noqa: ANN001
    """A key store's readiness check, prefixed with the store ``setting`` chooses."""
    kind = os.environ.get(setting, "file")
    try:
        detail = check(ctx)
    except Exception as exc:  # noqa: BLE001 - reported
        return Finding(name, False, f"{kind}: {type(exc).__name__}: {exc}", enables, fix)
    return Finding(name, True, f"{kind}: {detail}", enables)


def _keystore(ctx) -> Finding:  # noqa: ANN001
    from mcred.health import check_keystore

    return _key_store(ctx, "issuer key store", check_keystore, "MCRED_KEYSTORE", "issuing anything",
                      "see specs/issuer-keys.md")


def _master_key(ctx) -> Finding:  # noqa: ANN001
    from mcred.health import check_master_key

    return _key_store(ctx, "TSM master key", check_master_key, "MCRED_TSM_MASTER_KEY",
                      "provisioning (SCP03 keys of every SE)", "see specs/tsm.md")


def _reader_session_key(ctx) -> Finding:  # noqa: ANN001
    from mcred.health import check_reader_session_key

    try:
        detail = check_reader_session_key(ctx)
    except Exception as exc:  # noqa: BLE001 - reported
        return Finding("reader session key", False, f"{type(exc).__name__}: {exc}",
                       "the service's reader (sessions sealed in the database)",
                       "replace the file with 64 hex digits, or remove it to have a new one made "
                       "(open sessions end); see specs/presentation.md section 2")
    return Finding("reader session key", True, detail, "the service's reader (sessions sealed in the database)")


def _postgres() -> Finding:
    url = os.environ.get("MCRED_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            version = conn.execute(sa.text("show server_version")).scalar()
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - reported
        return Finding("PostgreSQL", False, f"{type(exc).__name__} at {url.split('@')[-1]}",
                       "the service at scale (MCRED_DATABASE_URL) and its tests",
                       "apt-get install -y postgresql; pip install '.[postgres]'")
    return Finding("PostgreSQL", True, f"server {version} at {url.split('@')[-1]}",
                   "the service at scale (MCRED_DATABASE_URL) and its tests")


def _pcsc() -> Finding:
    missing = [n for n, ok in (("pcscd", _which("pcscd")), ("vpcd driver", _first(VPCD_DRIVERS)),
                               ("opensc-tool", _which("opensc-tool")),
                               ("opensc-pkcs11.so", _first(OPENSC_PKCS11))) if not ok]
    return Finding("PC/SC bridge and OpenSC", not missing,
                   "pcscd, vsmartcard vpcd and OpenSC present" if not missing else f"missing {', '.join(missing)}",
                   "mcred phone pcsc ID: OpenSC's jpki driver and pkcs11-tool on a simulated phone",
                   "" if not missing else "apt-get install -y pcscd vsmartcard-vpcd opensc")


def _nfc() -> Finding:
    try:
        import smartcard  # noqa: F401 - pyscard, only whether it imports
        have = True
    except ImportError:
        have = False
    return Finding("NFC reader (PC/SC)", have, "pyscard present" if have else "missing pyscard",
                   "mcred reader nfc: read a phone tapped on a PC/SC contactless reader (or `mcred phone pcsc`'s)",
                   "" if have else "apt-get install -y libpcsclite-dev swig; pip install '.[nfc]'")


def _ble() -> Finding:
    import blelink

    try:
        blelink.require()
    except blelink.LinkError:
        return Finding("Bluetooth LE host (bumble)", False, "missing bumble",
                       "mcred reader ble, mcred phone ble, mcred ble radio: data retrieval over Bluetooth LE",
                       "pip install '.[ble]'")
    return Finding("Bluetooth LE host (bumble)", True, "bumble present",
                   "mcred reader ble, mcred phone ble, mcred ble radio: data retrieval over Bluetooth LE")


def _pdf() -> Finding:
    try:
        import pyhanko  # noqa: F401 - present or not
    except ImportError:
        return Finding("PDF signatures (pyHanko)", False, "missing pyHanko",
                       "mcred jpki sign --pdf, mcred jpki verify FILE.pdf, POST /rp/jpki/verify-pdf: PAdES",
                       "pip install '.[pdf]'")
    from importlib.metadata import PackageNotFoundError, version

    try:
        detail = f"pyHanko {version('pyhanko')}"
    except PackageNotFoundError:
        detail = "pyHanko present"
    return Finding("PDF signatures (pyHanko)", True, detail,
                   "mcred jpki sign --pdf, mcred jpki verify FILE.pdf, POST /rp/jpki/verify-pdf: PAdES")


def _xml() -> Finding:
    what = "mcred jpki sign --xml, mcred jpki verify FILE.xml, POST /rp/jpki/verify-xml: XML signatures, XAdES"
    try:
        import signxml  # noqa: F401 - present or not
    except ImportError:
        return Finding("XML signatures (signxml)", False, "missing signxml", what, "pip install '.[xml]'")
    from importlib.metadata import PackageNotFoundError, version

    try:
        detail = f"signxml {version('signxml')}"
    except PackageNotFoundError:
        detail = "signxml present"
    return Finding("XML signatures (signxml)", True, detail, what)


def _tshark() -> Finding:
    path = _which("tshark")
    return Finding("tshark", bool(path), path or "not found",
                   "the test where Wireshark decodes the BLE capture of `mcred reader ble --snoop`",
                   "" if path else "apt-get install -y tshark")


def _hsm() -> Finding:
    try:
        import pkcs11  # noqa: F401
        lib = True
    except ImportError:
        lib = False
    module = os.environ.get("MCRED_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so"
    have = Path(module).is_file()
    missing = [n for n, ok in (("python-pkcs11", lib), (module, have)) if not ok]
    return Finding("HSM (PKCS#11)", not missing,
                   f"python-pkcs11 and {module} present" if not missing else f"missing {', '.join(missing)}",
                   "MCRED_KEYSTORE=pkcs11 and MCRED_TSM_MASTER_KEY=pkcs11: issuer keys and the "
                   "TSM master key born and used in a token",
                   "" if not missing else "pip install '.[hsm]'; apt-get install -y softhsm2 (or your HSM's module)")


def _scan() -> Finding:
    missing = []
    for module, package in (("zxingcpp", "zxing-cpp"), ("PIL", "Pillow")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return Finding("QR scanning", not missing,
                   "zxing-cpp and Pillow present" if not missing else f"missing {', '.join(missing)}",
                   "mcred wallet respond --qr PICTURE: the phone scans a verifier's QR code from a screenshot",
                   "" if not missing else "pip install '.[scan]'")


#: The TypeScript peers under interop/ (folder, npm package, what they check).
NODE_PEERS = (
    ("auth0-mdl", "@auth0/mdl", "a second mdoc implementation (TypeScript) in the tests and benchmarks"),
    ("owf-mdoc", "@owf/mdoc", "a third mdoc implementation (OpenWallet Foundation, TypeScript) in the tests "
                              "and benchmarks"),
    ("sd-jwt-status-list", "@sd-jwt/jwt-status-list", "a second Token Status List implementation (TypeScript) "
                                                       "in the tests"),
    ("dcapi-hpke", "@hpke/core", "a second HPKE and Annex C transcript (online presentation, org-iso-mdoc) "
                                 "in the tests"),
    ("oid4vp-jose", "jose", "a second JWE and OpenID4VP transcript (online presentation, openid4vp-v1-unsigned) "
                            "in the tests"),
    ("ndef-js", "ndef", "a second NDEF implementation (NFC engagement's handover messages) in the tests"),
)


def _interop(folder: str) -> Path | None:
    """interop/<folder> of the source checkout: beside this package when it runs from the
    checkout (editable install), else above the working directory; None when neither (a
    plain ``pip install .`` copies no interop/ into site-packages)."""
    here = Path(__file__).resolve().parents[1]
    cwd = Path.cwd().resolve()
    for root in (here, cwd, *cwd.parents):
        bridge = root / "interop" / folder
        if (bridge / "package.json").is_file():
            return bridge
    return None


def _node_peer(folder: str, package: str, enables: str) -> Finding:
    name = f"{package} interop"
    node = _which("node")
    bridge = _interop(folder)
    if bridge is None:
        return Finding(name, False, f"no source checkout here (interop/{folder})", enables,
                       "run mcred doctor inside a checkout of the mcred repository")
    installed = (bridge / "node_modules" / package).is_dir()
    ok = bool(node) and installed
    detail = (f"node and {package} installed" if ok else
              "no node" if not node else f"{package} not installed in {bridge}")
    return Finding(name, ok, detail, enables,
                   "" if ok else f"apt-get install -y nodejs npm; cd {bridge} && npm install --no-save --ignore-scripts")


def _yubikit() -> Finding:
    try:
        import yubikit.core.smartcard.scp  # noqa: F401
    except ImportError:
        return Finding("yubikit SCP03 host", False, "not installed",
                       "a second SCP03 host (Yubico's) against our SE in the tests and benchmarks",
                       "pip install --no-deps yubikey-manager==5.5.1")
    return Finding("yubikit SCP03 host", True, "installed",
                   "a second SCP03 host (Yubico's) against our SE in the tests and benchmarks")


def _openssl() -> Finding:
    path = _which("openssl")
    return Finding("openssl", bool(path), path or "not found",
                   "the tests where OpenSSL reads our certificates, CRLs and OCSP responses",
                   "" if path else "apt-get install -y openssl")


def _secure_elements(ctx) -> Finding:  # noqa: ANN001
    """The TSM's record: quarantined SEs (every job on them stops until an operator clears
    them) and jobs that have not finished. Reads the registry only."""
    from sqlalchemy import func, select

    from tsm.db import SecureElementRow as Se
    from tsm.jobs import count_jobs

    enables = "provisioning, refreshes and handovers on every phone"
    try:  # counted by the database, only the SEs named read (each unfinished job was read whole,
        # its results included: after an outage, at 5,000 of them, 1 s and 93 MB)
        with ctx.engine.connect() as conn:
            total, quarantined = conn.execute(select(func.count(), func.count().filter(Se.state == "suspect"))
                                              .select_from(Se)).one()
            suspect = list(conn.execute(select(Se.se_id).where(Se.state == "suspect").order_by(Se.se_id)
                                        .limit(5)).scalars())
        unfinished = count_jobs(ctx.engine, unfinished=True)
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("TSM secure elements", False, f"cannot read the TSM's record: {type(exc).__name__}",
                       enables, "see the database finding")
    detail = (f"{total} on record, {quarantined} quarantined"
              + (f" ({', '.join(suspect)}{', ...' if quarantined > 5 else ''})" if suspect else "")
              + f", {unfinished} unfinished job(s)")
    fix = ("investigate (mcred tsm ses), then mcred tsm clear-quarantine --phone ID --reason TEXT"
           if suspect else "")
    if unfinished:
        fix = "; ".join(filter(None, (fix, "mcred tsm jobs --unfinished lists the jobs to resume "
                                           "(or to give up: mcred tsm abandon JOB --reason TEXT)")))
    return Finding("TSM secure elements", not suspect, detail, enables, fix)


def _workflows(ctx) -> Finding:  # noqa: ANN001
    """Handover and revocation workflows left to finish: failed ones (a step raised) and
    running ones nothing has moved for an hour and no live run holds (their process was
    killed; a run that holds one renews its lease while a step runs, however long). Each has
    revoked, held or provisioned part of what it was to, and a holder waits for the rest.
    Reads the registry only."""
    import datetime as dt

    from sqlalchemy import func, or_, select

    from issuer.db import Handover, utcnow

    enables = "handovers, renewals and changes of address carried to their end"
    try:
        with ctx.sessions() as s:
            failed = s.scalar(select(func.count()).select_from(Handover).where(Handover.state == "failed"))
            now = utcnow()
            stale = s.scalar(select(func.count()).select_from(Handover).where(  # a live run's lease: not stale
                Handover.state == "running", Handover.updated_at < now - dt.timedelta(hours=1),
                or_(Handover.lease_until.is_(None), Handover.lease_until < now)))
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("workflows", False, f"cannot read the workflows: {type(exc).__name__}", enables,
                       "see the database finding")
    if not failed and not stale:
        return Finding("workflows", True, "none left to finish", enables)
    detail = ", ".join(filter(None, (f"{failed} failed" if failed else "",
                                     f"{stale} running but unchanged for an hour or more" if stale else "")))
    return Finding("workflows", False, detail, enables,
                   "mcred workflows --state failed (and --state running) lists them, each with the command "
                   "that resumes it")


#: ``mcred doctor`` says housekeeping is behind when no task ran for this long: the issuer's
#: CRLs are signed again in the last hour before their nextUpdate, so a schedule that comes
#: less often leaves the first relying party after that hour waiting for the signature
HOUSEKEEPING_LATE = 3600


def _housekeeping(ctx, now=None) -> Finding:  # noqa: ANN001
    """When the scheduled housekeeping (mcred/housekeeping.py) last ran in this installation,
    by which process, and whether each task's last run succeeded, from its record
    (``task_runs``) only: never run (no ``mcred serve`` with its schedule, no cron), no run
    for :data:`HOUSEKEEPING_LATE` seconds, or a task whose last run failed, each named with
    what to do (specs/revocation.md section 8)."""
    import datetime as dt

    from mcred.housekeeping import DEFAULT_INTERVAL, TASKS, last_runs

    enables = ("the issuer's time-driven work done before anyone waits for it: CRLs and status lists signed "
               "again, the VICAL CA staged in its last months, signers rolled over, stale jobs cleared")
    how = (f"mcred serve runs it every {DEFAULT_INTERVAL:g} s (--housekeeping-interval); without the service, "
           "run mcred housekeeping run from cron, at least hourly")
    now = now or dt.datetime.now(dt.UTC)
    try:
        rows = last_runs(ctx)
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("housekeeping", False, f"cannot read its record: {type(exc).__name__}", enables,
                       "see the database finding")
    if not rows:
        return Finding("housekeeping", False, "never ran in this installation", enables, how)
    last = max(rows.values(), key=lambda r: r.last_started_at)
    ago = int((now - last.last_started_at).total_seconds())
    detail = (f"last ran {last.last_started_at.isoformat(timespec='seconds')} ({_ago(ago)}), by {last.last_runner}; "
              f"{len(rows)} of {len(TASKS)} task(s) on record")
    failed = sorted((r for r in rows.values() if not r.last_ok), key=lambda r: r.task)
    if failed:
        said = "; ".join(f"{r.task} failed at {r.last_started_at.isoformat(timespec='seconds')}: "
                         f"{r.last_outcome[:160]}" for r in failed[:3])
        return Finding("housekeeping", False, f"{detail}; {said}", enables,
                       "see the error (the service's log has the traceback), then mcred housekeeping run --only "
                       + " --only ".join(r.task for r in failed))
    if ago > HOUSEKEEPING_LATE:
        return Finding("housekeeping", False, f"{detail}: none since", enables, how)
    return Finding("housekeeping", True, f"{detail}, the last run of each succeeded", enables)


def _ago(seconds: int) -> str:
    if seconds < 120:
        return f"{max(seconds, 0)} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _first_contact(ctx) -> Finding:  # noqa: ANN001
    """How the TSM meets a factory-fresh SE, which SE makers it trusts, and who it shows
    itself as."""
    from mcred.context import ConfigError, first_contact

    enables = ("an authenticated first contact: a factory-fresh SE proves itself (SCP11), and the TSM too "
               "(SCP11a), before its keys are set")
    try:
        kind = first_contact()
        roots = ctx.se_roots
    except ConfigError as exc:
        return Finding("TSM first contact", False, str(exc), enables, "fix the setting (specs/tsm.md, First contact)")
    if roots is None:
        return Finding("TSM first contact", True, f"{kind}: the published GP test keys, authenticating nobody",
                       enables, "unset MCRED_TSM_FIRST_CONTACT where the SEs offer SCP11")
    how = {"scp11": "SCP11a where the SE offers it, else SCP11b", "scp11a": "SCP11a only",
           "scp11b": "SCP11b (the TSM shows no identity: SEs that name their key-loading OCEs refuse its keys)"}[kind]
    if kind in ("scp11", "scp11a"):  # looked at, not made: the first job makes the OCE
        from tsm.oce import OCE_FILE, RETIRED_DIR, oce_dir

        made = (oce_dir(ctx.home) / OCE_FILE).is_file()
        how += (", as the TSM of <home>/tsm-oce/ (its ca.pem is the CA-KLOC key the factory puts into SEs)" if made
                else ", as the TSM whose OCE identity the first phone or job makes (<home>/tsm-oce/)")
        retired = oce_dir(ctx.home) / RETIRED_DIR
        n = sum(1 for g in retired.iterdir() if g.is_dir()) if retired.is_dir() else 0
        if n:
            how += (f", with the chains of {n} retired KLOC CA(s) for SEs that still name one (moved at first "
                    "contact, or by `mcred tsm rotate-kloc --all`)")
    names = [r.subject.rfc4514_string() for r in roots]
    if not names:
        return Finding("TSM first contact", True, f"{how}; no SE maker trusted yet (the first `mcred phone new` "
                       "makes this installation's)", enables,
                       "MCRED_SE_MAKER_ROOTS for phones made elsewhere (their `mcred phone maker-root`)")
    return Finding("TSM first contact", True, f"{how}; trusting {len(names)} SE maker(s): " + "; ".join(names[:3]),
                   enables)


def _tsa(ctx, now=None) -> Finding:  # noqa: ANN001
    """The installation's time-stamping authority, from the registry only (nothing made
    here): its current unit, whether that unit names the CRL relying parties check, how
    many units were revoked and how many tokens were stamped, its current root and the staged
    next one: while none is staged, a warning from :data:`issuer.tsa.ROOT_NOTICE_DAYS` before the
    TSA would stage one by itself (:data:`issuer.tsa.ROOT_STAGE_DAYS` before the root's last
    :data:`issuer.tsa.ROOT_RENEW_DAYS`, where the next unit due comes with a new root), naming
    the staging, the roots to hand out and the rollover (specs/issuer-keys.md, "The TSA's
    root")."""
    import datetime as dt

    from cryptography import x509
    from sqlalchemy import func, select

    from issuer.db import AuditEvent, IssuerKey
    from issuer.tsa import (
        PURPOSE_ROOT,
        PURPOSE_UNIT,
        ROOT_NOTICE_DAYS,
        ROOT_RENEW_DAYS,
        ROOT_STAGE_DAYS,
        current_root,
        generation_of,
        staged_root,
    )
    from protocols.certs import crl_url

    enables = "signature time-stamps (mcred jpki sign --timestamp, POST /tsa, PAdES B-T/B-LT/B-LTA)"
    now = now or dt.datetime.now(dt.UTC)
    try:
        with ctx.sessions() as s:
            units = sorted(s.scalars(select(IssuerKey).where(IssuerKey.purpose == PURPOSE_UNIT)).all(),
                           key=lambda r: generation_of(r.label))
            roots = sorted(s.scalars(select(IssuerKey).where(IssuerKey.purpose == PURPOSE_ROOT)).all(),
                           key=lambda r: generation_of(r.label))
            stamped = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "tsa.stamp"))
            current = units[-1] if units and units[-1].revoked_at is None else None  # the one stamping
            revoked = sum(1 for u in units if u.revoked_at is not None)
            cert = x509.load_der_x509_certificate(current.certificate) if current is not None else None
            label = current.label if current is not None else None
            current_row, staged = current_root(roots), staged_root(roots, now)
            root = x509.load_der_x509_certificate(current_row.certificate) if current_row is not None else None
            root_label = current_row.label if current_row is not None else None
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("time-stamping authority", False, f"cannot read the registry: {type(exc).__name__}",
                       enables, "see the database finding")
    if root is None or (cert is None and not units):
        return Finding("time-stamping authority", True, "not made yet: its root and unit are made on first use",
                       enables)
    where = crl_url(cert) if cert is not None else None
    rolls = root.not_valid_after_utc - dt.timedelta(days=ROOT_RENEW_DAYS)
    detail = ((f"{label} valid until {cert.not_valid_after_utc.date().isoformat()}, "
               + (f"its revocation at {where}" if where else "naming no CRL")) if cert is not None
              else "no unit stamping now (the next time-stamp makes one)")
    detail += (f"; {revoked} unit(s) revoked, {stamped} token(s) stamped; root {root_label} valid until "
               f"{root.not_valid_after_utc.date().isoformat()} ({len(roots)} generation(s))")
    if cert is not None and where is None:
        return Finding("time-stamping authority", False, detail, enables,
                       f"relying parties cannot learn of {label}'s revocation: mcred tsa revoke {label} "
                       "--reason superseded (the next unit names the root's CRL)")
    when = ("the next unit due comes with a new root" if rolls <= now
            else f"from {rolls.date().isoformat()} the next unit due comes with a new root")
    if staged is not None:
        return Finding("time-stamping authority", True,
                       f"{detail}; {staged.label} staged (in /tsa/root.pem) since {staged.created_at.date().isoformat()}, "
                       "started by itself with the "
                       + ("next unit due" if rolls <= now else f"first unit due from {rolls.date().isoformat()}")
                       + " (or by mcred tsa rollover)", enables)
    stages = rolls - dt.timedelta(days=ROOT_STAGE_DAYS)
    if stages - now < dt.timedelta(days=ROOT_NOTICE_DAYS):
        by_itself = ("the TSA stages its next root by itself at its next time-stamp" if stages <= now
                     else f"from {stages.date().isoformat()} the TSA stages its next root by itself")
        return Finding("time-stamping authority", False,
                       f"{detail}; none staged: {by_itself}, and {when}, whose time-stamps relying parties refuse "
                       "until they hold it", enables,
                       "mcred tsa stage, give relying parties the roots (mcred export tsa-root --out tsa-root.pem, "
                       "GET /tsa/root.pem), then mcred tsa rollover")
    return Finding("time-stamping authority", True, detail, enables)


def _jpki_roots(ctx, now=None) -> Finding:  # noqa: ANN001
    """The JPKI roots of both slots, from the registry only (nothing made here): the issuing
    generation of each, how long it lasts, the staged next one, and a warning from
    :data:`issuer.jpki.ca.ROOT_NOTICE_DAYS` before the certificates a root would issue may
    outlive it (its last :data:`issuer.jpki.ca.ROOT_RENEW_DAYS`), which the issuer refuses
    (``issuer.jpki.issuance.root_refusal``), asking to stage, hand out the bundle
    and roll over, or to start the staged one (specs/issuer-keys.md, "The JPKI root
    generations")."""
    import datetime as dt

    from issuer.jpki.ca import ROOT_NOTICE_DAYS, ROOT_RENEW_DAYS, JpkiCa, staged_of
    from protocols.jpki.profile import Purpose

    enables = "JPKI issuance and its relying parties (the trust bundle /trust/jpki-sign-root.pem, jpki-auth-root.pem)"
    now = now or dt.datetime.now(dt.UTC)
    ca = JpkiCa(ctx.sessions, None)  # the registry alone: the key store's own finding says whether it opens
    try:
        found = {p: ca.generations(p) for p in Purpose}
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("JPKI roots", False, f"cannot read the registry: {type(exc).__name__}", enables,
                       "see the database finding")
    parts, late, fixes = [], [], []
    for purpose, generations in found.items():
        active = [g for g in generations if g.active]
        if not active:
            continue
        current, staged = active[-1], staged_of(generations, now)
        end = current.certificate.not_valid_after_utc
        part = f"{purpose.value} {current.label} valid until {end.date().isoformat()}"
        if staged is not None:
            part += f", {staged.label} staged (in the trust bundle) since {staged.created_at.date().isoformat()}"
        parts.append(part)
        due = end - dt.timedelta(days=ROOT_RENEW_DAYS)
        if due - now < dt.timedelta(days=ROOT_NOTICE_DAYS):
            late.append(f"{current.label} {'refuses' if due <= now else 'from ' + due.date().isoformat() + ' refuses'} "
                        "the certificates that would outlive it (a next card's first: provisionings and renewals "
                        "stop)")
            slot = purpose.value
            fixes.append(f"start {staged.label} once relying parties hold the bundle: mcred jpki rollover --slot {slot}"
                         if staged is not None else
                         f"mcred jpki stage --slot {slot}, give relying parties the bundle (mcred export jpki-root "
                         f"--slot {slot} --out FILE.pem, /trust/jpki-{slot}-root.pem), then mcred jpki rollover "
                         f"--slot {slot}")
    if not parts:
        return Finding("JPKI roots", True, "not made yet: made at the first provisioning (or mcred jpki setup)", enables)
    detail = "; ".join(parts)
    if late:
        return Finding("JPKI roots", False, f"{detail}; {'; '.join(late)}", enables, "; ".join(fixes))
    return Finding("JPKI roots", True, detail, enables)


#: ``mcred doctor`` warns this long before the current IACA stops issuance (its last
#: ``rollover_margin``): time to roll it over and hand readers the new trust bundle.
IACA_NOTICE_DAYS = 180


def _mdoc_iaca(ctx, now=None) -> Finding:  # noqa: ANN001
    """The current mdoc IACA, from the registry only (nothing made here): how long it lasts,
    and a warning once issuance stops within :data:`IACA_NOTICE_DAYS` (specs/issuer-keys.md,
    "The mdoc IACA")."""
    import datetime as dt

    from issuer.mdoc.pki import PURPOSE_IACA
    from mcred.mdoc_flow import mdoc_service

    enables = "mdoc issuance (MSOs chain to the current IACA)"
    now = now or dt.datetime.now(dt.UTC)
    try:
        pki = mdoc_service(ctx).pki  # the installation's own (its margin); it makes nothing here
        with ctx.sessions() as s:
            rows = pki._rows(s, PURPOSE_IACA)
            current = pki._active(s, PURPOSE_IACA)
            cert = pki._cert(current) if current is not None else None
            staged = pki.staged_iaca(s, now)  # while it can still be started
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("mdoc IACA", False, f"cannot read the registry: {type(exc).__name__}", enables,
                       "see the database finding")
    if cert is None:
        return Finding("mdoc IACA", True, "not made yet: made at the first mdoc issuance (or mcred export iaca)",
                       enables)
    stops = cert.not_valid_after_utc - pki.config.rollover_margin
    detail = (f"{current.label} valid until {cert.not_valid_after_utc.date().isoformat()}; "
              f"{len(rows)} generation(s)")
    if staged is not None:
        detail += f"; {staged.label} staged (in the trust bundle) since {staged.created_at.date().isoformat()}"
    if stops - now < dt.timedelta(days=IACA_NOTICE_DAYS):
        when = "has stopped" if stops <= now else f"stops on {stops.date().isoformat()}"
        fix = (f"start {staged.label} once readers hold the bundle: mcred mdoc iaca rollover" if staged is not None
               else "mcred mdoc iaca stage, give readers the new bundle (mcred export iaca), then "
                    "mcred mdoc iaca rollover")
        return Finding("mdoc IACA", False, f"{detail}; issuance {when}", enables, fix)
    return Finding("mdoc IACA", True, detail, enables)


def _vical_ca(ctx, now=None) -> Finding:  # noqa: ANN001
    """The VICAL CA, from the registry only (nothing made or staged here): how long it lasts,
    the staged next generation, and a warning when it is to roll over (in its last
    ``rollover_margin``) onto a CA readers were never given: none staged once its staging
    window is open (``vical_ca_notice`` before that; specs/issuer-keys.md, "The VICAL CA
    staged ahead"). The issuer stages it by itself at the next VICAL it signs (or
    /trust/vical-ca.pem asked, by a reader or the scheduled housekeeping), so this says an
    installation whose VICAL nobody asked for and whose housekeeping did not run."""
    import datetime as dt

    from issuer.mdoc.pki import PURPOSE_VICAL_CA
    from mcred.mdoc_flow import mdoc_service

    enables = "readers following the VICAL (mcred reader serve --vical URL --vical-trust CA.pem)"
    now = now or dt.datetime.now(dt.UTC)
    try:
        pki = mdoc_service(ctx).pki  # the installation's own margins; it makes nothing here
        with ctx.sessions() as s:
            rows = pki._rows(s, PURPOSE_VICAL_CA)
            current = pki._active(s, PURPOSE_VICAL_CA)
            cert = pki._cert(current) if current is not None else None
            staged = pki.staged_vical_ca(s, now)
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("VICAL CA", False, f"cannot read the registry: {type(exc).__name__}", enables,
                       "see the database finding")
    if cert is None:
        return Finding("VICAL CA", True, "not made yet: made with the first VICAL (mcred export vical, /trust/vical)",
                       enables)
    rolls = cert.not_valid_after_utc - pki.config.rollover_margin
    detail = f"{current.label} valid until {cert.not_valid_after_utc.date().isoformat()}; {len(rows)} generation(s)"
    if staged is not None:
        detail += (f"; {staged.label} staged (in /trust/vical-ca.pem) since {staged.created_at.date().isoformat()}, "
                   f"started by itself {'at the next VICAL' if rolls <= now else 'on ' + rolls.date().isoformat()} "
                   "(or by mcred mdoc vical-ca rollover)")
        return Finding("VICAL CA", True, detail, enables)
    if now < rolls - pki.config.vical_ca_notice:
        return Finding("VICAL CA", True, detail, enables)
    when = "at the next VICAL" if rolls <= now else f"on {rolls.date().isoformat()}"
    return Finding("VICAL CA", False, f"{detail}; rolls over by itself {when} onto a VICAL CA readers were never "
                   "given (none staged)", enables,
                   "mcred mdoc vical-ca stage, give readers of the VICAL /trust/vical-ca.pem (mcred export vical "
                   "--ca), then mcred mdoc vical-ca rollover")


def _mdoc_signers_out_of_use(ctx) -> Finding:  # noqa: ANN001
    """Whether any phone still holds a valid mdoc of a revoked mdoc signer: a revoked document
    signer, or one under a revoked IACA (readers refuse those mdocs), from the registry only;
    the fix names the re-issue (specs/issuer-keys.md, "Re-issuing after a compromise")."""
    from sqlalchemy import select

    from issuer.db import Credential
    from issuer.mdoc.pki import PURPOSE_DS, PURPOSE_IACA
    from mcred.mdoc_flow import mdoc_service

    enables = "presentations of every phone (readers refuse an mdoc of a revoked signer)"
    try:
        pki = mdoc_service(ctx).pki
        with ctx.sessions() as s:
            revoked_iacas = {pki._cert(r).subject: r.label for r in pki._rows(s, PURPOSE_IACA)
                             if r.revoked_at is not None}
            out_of_use = {}  # document signer -> the revoked signer to re-issue from
            for r in pki._rows(s, PURPOSE_DS):
                root = revoked_iacas.get(pki._cert(r).issuer)
                if root is not None or r.revoked_at is not None:
                    out_of_use[r.label] = root or r.label
            held = s.execute(select(Credential.issuer_key, Credential.phone_id).distinct().where(
                Credential.kind == "mdoc", Credential.status == "valid",
                Credential.issuer_key.in_(sorted(out_of_use)))).all() if out_of_use else []
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("mdoc signers", False, f"cannot read the registry: {type(exc).__name__}", enables,
                       "see the database finding")
    phones: dict[str, set[str]] = {}
    for ds, phone in held:
        phones.setdefault(out_of_use[ds], set()).add(phone)
    pending = {label: len(p) for label, p in phones.items()}
    if not pending:
        return Finding("mdoc signers", True, f"no valid mdoc of a revoked signer ({len(revoked_iacas)} IACA(s) "
                       "revoked)" if revoked_iacas else "no valid mdoc of a revoked signer", enables)
    said = ", ".join(f"{label}: {n} phone(s)" for label, n in sorted(pending.items()))
    return Finding("mdoc signers", False, f"valid mdocs of revoked signers ({said}), refused by readers", enables,
                   "; ".join(f"mcred mdoc reissue --signer {label}" for label in sorted(pending)))


def _compromised_keys(ctx) -> Finding:  # noqa: ANN001
    """Whether the key store still holds the private key of an issuer key revoked because it
    is known or suspected in other hands (keyCompromise, cACompromise): an mdoc signer, a TSA
    unit (a JPKI root or OCSP responder, should one ever be revoked). A key-compromise
    procedure ends with that key destroyed and a record of it (specs/issuer-keys.md, "A
    signer's key destroyed"). Reads the registry, and asks the key store only of those keys
    (``has``); nothing is destroyed here: the fix names the command, each PKI's own."""
    from issuer.db import IssuerKey
    from issuer.jpki.ca import JpkiCa
    from issuer.key_destruction import COMPROMISE_REASONS
    from issuer.mdoc.pki import MdocPki
    from issuer.tsa import PURPOSE_ROOT, PURPOSE_UNIT

    commands = {**dict.fromkeys(MdocPki.DESTROYABLE, "mcred mdoc key destroy"),
                **dict.fromkeys(JpkiCa.DESTROYABLE, "mcred jpki key destroy"),
                **dict.fromkeys((PURPOSE_ROOT, PURPOSE_UNIT), "mcred tsa key destroy")}
    enables = "key-compromise procedures carried to their end (the key destroyed, the destruction recorded)"
    try:
        with ctx.sessions() as s:
            rows = [(r.label, r.purpose) for r in s.query(IssuerKey).filter(
                IssuerKey.purpose.in_(sorted(commands)), IssuerKey.revoked_at.is_not(None),
                IssuerKey.revocation_reason.in_(sorted(COMPROMISE_REASONS)), IssuerKey.key_destroyed_at.is_(None))
                .order_by(IssuerKey.revoked_at, IssuerKey.label)]
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding("compromised signer keys", False, f"cannot read the registry: {type(exc).__name__}", enables,
                       "see the database finding")
    none = Finding("compromised signer keys", True, "none kept: no key revoked for a compromise (an mdoc signer, "
                   "a TSA unit) is still in the key store", enables)
    if not rows:
        return none
    try:
        kept = [(label, purpose) for label, purpose in rows if ctx.keystore.has(label)]
    except Exception as exc:  # noqa: BLE001 - reported (the key store finding says why)
        return Finding("compromised signer keys", False, f"cannot ask the key store: {type(exc).__name__}",
                       enables, "see the issuer key store finding")
    if not kept:
        return none
    labels = [label for label, _ in kept]
    return Finding("compromised signer keys", False,
                   f"{len(kept)} key(s) revoked for a key compromise are still in the key store "
                   f"({', '.join(labels[:5])}{', ...' if len(kept) > 5 else ''})", enables,
                   "; ".join(f"{commands[purpose]} {label}" for label, purpose in kept))


def _destroyed_keys_back(ctx) -> Finding:  # noqa: ANN001
    """Whether the key store holds again a key the registry records destroyed
    (``key_destroyed_at``): a backup of the key files restored, a token's objects
    re-imported. Nothing signs with it (each PKI refuses on the record), but a key that is
    there can be copied: the destruction is no longer what the record says. The fix
    destroys it again (``restored`` in the answer and the audit event)."""
    from issuer.db import IssuerKey
    from issuer.jpki.ca import JpkiCa
    from issuer.mdoc.pki import MdocPki
    from issuer.tsa import PURPOSE_ROOT, PURPOSE_UNIT

    commands = {**dict.fromkeys(MdocPki.DESTROYABLE, "mcred mdoc key destroy"),
                **dict.fromkeys(JpkiCa.DESTROYABLE, "mcred jpki key destroy"),
                **dict.fromkeys((PURPOSE_ROOT, PURPOSE_UNIT), "mcred tsa key destroy")}
    name, enables = "destroyed keys", "key destructions that stay done (no destroyed key back in the key store)"
    try:
        with ctx.sessions() as s:
            rows = [(r.label, r.purpose) for r in s.query(IssuerKey).filter(
                IssuerKey.purpose.in_(sorted(commands)), IssuerKey.key_destroyed_at.is_not(None))
                .order_by(IssuerKey.key_destroyed_at, IssuerKey.label)]
    except Exception as exc:  # noqa: BLE001 - reported (the database finding says why)
        return Finding(name, False, f"cannot read the registry: {type(exc).__name__}", enables,
                       "see the database finding")
    if not rows:
        return Finding(name, True, "none destroyed yet", enables)
    try:
        back = [(label, purpose) for label, purpose in rows if ctx.keystore.has(label)]
    except Exception as exc:  # noqa: BLE001 - reported (the key store finding says why)
        return Finding(name, False, f"cannot ask the key store: {type(exc).__name__}", enables,
                       "see the issuer key store finding")
    if not back:
        return Finding(name, True, f"{len(rows)} destroyed, none back in the key store", enables)
    labels = [label for label, _ in back]
    return Finding(name, False, f"{len(back)} key(s) recorded destroyed are in the key store again, restored "
                   f"from a backup? ({', '.join(labels[:5])}{', ...' if len(back) > 5 else ''}); nothing signs "
                   "with them, but they can be copied", enables,
                   "; ".join(f"{commands[purpose]} {label}" for label, purpose in back))


def _data_access(ctx) -> Finding:  # noqa: ANN001
    """Whether others may enter the data directory or read its SQLite database: a home made
    by an older release (before its modes were fixed), or under a wide umask, or one the operator chose,
    keeps its mode (nothing is changed here); this says which to narrow."""
    from sqlalchemy.engine import make_url

    enables = "keys, the database with the holders' personal data, the SEs: their owner's alone"
    home = Path(ctx.home)
    wide = []
    try:
        mode = home.stat().st_mode & 0o777
        if mode & 0o077:
            wide.append((f"{home} is {mode:04o}", f"chmod 700 {home}"))
        if ctx.database.startswith("sqlite"):
            db = make_url(ctx.database).database
            if db and db != ":memory:" and Path(db).is_file():
                mode = Path(db).stat().st_mode & 0o777
                if mode & 0o077:
                    wide.append((f"{db} is {mode:04o}", f"chmod 600 {db}*"))
    except (OSError, ValueError) as exc:
        return Finding("data directory access", False, f"cannot look: {type(exc).__name__}", enables,
                       f"check {home}")
    if wide:
        return Finding("data directory access", False, "others may read: " + "; ".join(w for w, _ in wide),
                       enables, "; ".join(f for _, f in wide))
    return Finding("data directory access", True, "owner only", enables)


#: The first findings are the installation's own (database, public URL, issuer key store,
#: TSM master key, reader session key): the installation is ready when they are.
_OWN = 5


def diagnose(ctx) -> list[Finding]:  # noqa: ANN001
    """Every finding, the installation's own first."""
    return [_database(ctx), _public_url(), _keystore(ctx), _master_key(ctx), _reader_session_key(ctx),
            _data_access(ctx), _secure_elements(ctx), _workflows(ctx), _housekeeping(ctx), _first_contact(ctx), _jpki_roots(ctx), _tsa(ctx), _mdoc_iaca(ctx), _vical_ca(ctx), _mdoc_signers_out_of_use(ctx), _compromised_keys(ctx), _destroyed_keys_back(ctx), _postgres(), _pcsc(), _nfc(), _ble(), _pdf(), _xml(), _hsm(), _scan(),
            *(_node_peer(*peer) for peer in NODE_PEERS), _yubikit(), _openssl(), _tshark()]


def as_json(findings: list[Finding], home: Path) -> dict:
    return {"home": str(home), "findings": [asdict(f) for f in findings],
            "ready": all(f.ok for f in findings[:_OWN])}


def as_lines(findings: list[Finding], home: Path) -> str:
    """The findings as plain text, for output that is not a terminal: one line per component
    (``ok`` or ``--``, its name padded to the longest, its state), and beneath one that is
    missing what it would enable and how to get it. No cell is cut or padded to another's
    width; peers' text never reaches here (every finding is this machine's)."""
    width = max((len(f.name) for f in findings), default=0)
    lines = [f"mcred at {home}"]
    for f in findings:
        lines.append(f"{'ok' if f.ok else '--'}  {f.name:<{width}}  {f.detail}".rstrip())
        if not f.ok:
            lines.extend(f"    {label}: {text}" for label, text in (("enables", f.enables), ("to get it", f.fix))
                         if text)
    return "\n".join(lines)
