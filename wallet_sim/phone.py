"""A simulated phone: its GP-SE image and its app data directory, under
``<home>/phones/<phone_id>/`` (``se.cbor``, ``phone.cbor``, ``app/``).

A factory reset wipes ``app/`` (the wallet app's data) and never the SE: credentials in
the SE survive a reset, as on a real phone (DOMAIN.md).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import cbor2
import platformdirs
from cryptography.hazmat.primitives.asymmetric import ec

from wallet_sim.se.applet import Applet
from wallet_sim.se.constants import DEFAULT_MAX_FAILED_AUTHENTICATIONS
from wallet_sim.se.errors import PhoneNotFoundError, PhoneStateError
from wallet_sim.se.image_check import cbor_kind
from wallet_sim.se.maker import se_maker
from wallet_sim.se.runtime import SecureElement
from wallet_sim.se.store import (
    DEFAULT_NVM,
    NVM_MAX,
    NVM_MIN,
    SE_FILE,
    ImageFile,
    encode_state,
    factory_state,
    write_atomically,
)

DEFAULT_MODEL = "mcred-sim-1"
PHONE_FILE = "phone.cbor"
#: A phone's directories are its owner's alone (the SE image, the wallet app's data), made
#: so whatever the umask: a directory others may write lets them put their own files there.
PRIVATE_DIR = 0o700
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def data_home(home: Path | None = None) -> Path:
    """``home`` if given, else ``$MCRED_HOME``, else the platform's user data directory."""
    if home is not None:
        return Path(home)
    env = os.environ.get("MCRED_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("mcred"))


def phone_dir(phone_id: str, home: Path | None = None) -> Path:
    if not _ID.match(phone_id):
        raise PhoneNotFoundError(f"{phone_id!r} is not a phone id")
    return data_home(home) / "phones" / phone_id


def _existing(phone_id: str, home: Path | None) -> Path:
    d = phone_dir(phone_id, home)
    if not (d / SE_FILE).is_file():
        raise PhoneNotFoundError(f"no phone {phone_id!r} under {data_home(home)}")
    return d


def app_dir(phone_id: str, home: Path | None = None) -> Path:
    """The wallet app's private data directory (cleared by :func:`factory_reset`)."""
    d = _existing(phone_id, home) / "app"
    d.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    return d


def create_phone(home: Path | None = None, model: str = DEFAULT_MODEL, *,
                 max_failed_authentications: int = DEFAULT_MAX_FAILED_AUTHENTICATIONS,
                 initial_sequence_counter: int = 0, nvm_bytes: int = DEFAULT_NVM,
                 kloc: ec.EllipticCurvePublicKey | None = None) -> str:
    """Make a new phone with a factory-fresh SE; return its id.

    ``kloc``: the CA key of the OCEs (TSMs) that the SE's issuer allows to load keys
    (GPCS Amendment F PK.CA-KLOC.ECDSA, P-256). With it, the SE offers SCP11a and takes key
    loading only from an OCE that key certifies (specs/secure-element.md "SCP11a"); without
    it, SCP11b only.

    ``max_failed_authentications`` is the number of consecutive failed EXTERNAL
    AUTHENTICATEs after which a keyset is blocked; ``initial_sequence_counter`` exists so
    tests can reach counter exhaustion; ``nvm_bytes`` is the SE's non-volatile memory
    (NVM_MIN..NVM_MAX: a command that would need more is refused with 6A84)."""
    if max_failed_authentications < 1:
        raise ValueError("max_failed_authentications must be at least 1")
    if type(nvm_bytes) is not int or not NVM_MIN <= nvm_bytes <= NVM_MAX:
        raise ValueError(f"nvm_bytes {nvm_bytes!r} is not an integer {NVM_MIN}..{NVM_MAX}")
    data_home(home).mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    root = data_home(home) / "phones"
    root.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    while True:
        phone_id = "ph-" + secrets.token_hex(6)
        d = root / phone_id
        try:
            d.mkdir(mode=PRIVATE_DIR)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    (d / "app").mkdir(mode=PRIVATE_DIR)
    write_atomically(d / PHONE_FILE, cbor2.dumps({"id": phone_id, "model": model}, canonical=True))
    state = factory_state(max_failed_authentications=max_failed_authentications,
                          sequence_counter=initial_sequence_counter, nvm_capacity=nvm_bytes,
                          maker=se_maker(data_home(home)), kloc=kloc)
    ImageFile(d / SE_FILE).create(encode_state(state))  # both NVM banks, se.cbor the first
    return phone_id


def _phone_record(path: Path) -> dict:
    """The phone's record (``phone.cbor``: a map with its ``id`` and ``model``, text), read
    and checked; :class:`PhoneStateError` naming the file and what is wrong otherwise."""
    try:
        record = cbor2.loads(path.read_bytes())
    except OSError as e:
        raise PhoneStateError(f"cannot read phone record {path}: {e.strerror or e}") from None
    except (ValueError, cbor2.CBORDecodeError) as e:  # an empty file too (CBORDecodeEOF)
        raise PhoneStateError(f"cannot read phone record {path}: {e or 'empty'}") from None
    if type(record) is not dict:
        raise PhoneStateError(f"cannot read phone record {path}: a CBOR {cbor_kind(record)}, not a map")
    for name in ("id", "model"):
        if name in record and type(record[name]) is not str:
            raise PhoneStateError(f"cannot read phone record {path}: {name}: a CBOR {cbor_kind(record[name])}, "
                                  "not a text string")
    return record


def list_phones(home: Path | None = None) -> list[str]:
    root = data_home(home) / "phones"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / SE_FILE).is_file())


def open_secure_element(phone_id: str, home: Path | None = None, *,
                        applet_classes: dict[bytes, type[Applet]] | None = None,
                        packages: dict[bytes, tuple[bytes, ...]] | None = None) -> SecureElement:
    """The phone's SE, with ``transmit(apdu: bytes) -> bytes``. ``applet_classes`` /
    ``packages`` replace the shipped applets (tests)."""
    d = _existing(phone_id, home)
    return SecureElement(d / SE_FILE, applet_classes=applet_classes, packages=packages)


def factory_reset(phone_id: str, home: Path | None = None) -> None:
    """Wipe the phone's app data; the SE is not touched."""
    d = _existing(phone_id, home) / "app"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(mode=PRIVATE_DIR)


def describe(phone_id: str, home: Path | None = None) -> dict:
    """Public facts for ``mcred phone show``: model, CPLC, security domains, applets."""
    d = _existing(phone_id, home)
    meta = _phone_record(d / PHONE_FILE)
    se = open_secure_element(phone_id, home)
    app = d / "app"
    return {
        "id": phone_id,
        "model": meta.get("model", DEFAULT_MODEL),
        "app_data_files": sorted(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file()) if app.exists() else [],
        "secure_element": se.describe(),
    }
