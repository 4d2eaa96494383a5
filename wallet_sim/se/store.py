"""Persistence of one SE image: a CBOR map written atomically, like a card's NVM that
never holds a half-written update.

Atomic against a crashed *process* (the image file is the old image or the new one, never
part of one). ``fsync`` before the switch, which adds durability against a crashed
*machine* at a few ms per command, is off unless ``MCRED_SE_FSYNC=1``
(specs/secure-element.md, Persistence).

:func:`write_atomically` writes a new temporary file and ``os.replace``-s it over the
target. :class:`ImageFile`, which the SE uses after each command that changed its NVM,
keeps two image files beside ``se.cbor`` (``.se.cbor.a``, ``.se.cbor.b``), rewrites the
one ``se.cbor`` does not name, and switches ``se.cbor`` to it with a hard link and one
``os.replace``: the same all-or-nothing switch, without creating and freeing an inode per
command (on ext4 that create + replace cost 0.25-0.9 ms a write, the switch ~0.05 ms).
:meth:`ImageFile.create` makes a new image with both slots already in place (a phone's
NVM banks exist from manufacture)."""

from __future__ import annotations

import contextlib
import os
import secrets
import weakref
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.cbor import array_head, map_head
from wallet_sim.se.constants import (
    CARD_SECURED,
    DEFAULT_MAX_FAILED_AUTHENTICATIONS,
    FACTORY_KEY,
    FACTORY_KVN,
    ISD_AID,
    KLOC_KVN,
    SCP11A_KVN,
    SCP11B_KVN,
    SD_PERSONALIZED,
)
from wallet_sim.se.errors import SeStateError
from wallet_sim.se.image_check import check_image
from wallet_sim.se.maker import SeMaker

STATE_VERSION = 1
SE_FILE = "se.cbor"

# CPLC fields, GPCS 2.3.1 Table H-2 (name, length); 42 bytes in all.
CPLC_FIELDS: tuple[tuple[str, int], ...] = (
    ("ic_fabricator", 2), ("ic_type", 2), ("os_id", 2), ("os_release_date", 2),
    ("os_release_level", 2), ("ic_fabrication_date", 2), ("ic_serial_number", 4),
    ("ic_batch_identifier", 2), ("ic_module_fabricator", 2), ("ic_module_packaging_date", 2),
    ("icc_manufacturer", 2), ("ic_embedding_date", 2), ("ic_pre_personalizer", 2),
    ("ic_pre_personalization_date", 2), ("ic_pre_personalization_equipment", 4),
    ("ic_personalizer", 2), ("ic_personalization_date", 2),
    ("ic_personalization_equipment", 4),
)


def new_cplc() -> bytes:
    """A CPLC with fixed simulator identifiers and a random IC serial number and batch."""
    fixed = {
        "ic_fabricator": bytes.fromhex("4D43"),  # "MC"
        "ic_type": bytes.fromhex("5345"),  # "SE"
        "os_id": bytes.fromhex("4D43"),
        "os_release_date": bytes.fromhex("5001"),
        "os_release_level": bytes.fromhex("0100"),
        "ic_serial_number": secrets.token_bytes(4),
        "ic_batch_identifier": secrets.token_bytes(2),
    }
    return b"".join(fixed.get(name, b"\x00" * n) for name, n in CPLC_FIELDS)


def decode_cplc(cplc: bytes) -> dict[str, str]:
    out, i = {}, 0
    for name, n in CPLC_FIELDS:
        out[name] = cplc[i : i + n].hex().upper()
        i += n
    return out


def key_diversification_data(cplc: bytes) -> bytes:
    """KDD = IC fabricator || IC type || IC serial number || IC batch identifier (10 bytes)."""
    f = decode_cplc(cplc)
    return bytes.fromhex(f["ic_fabricator"] + f["ic_type"] + f["ic_serial_number"] + f["ic_batch_identifier"])


#: Non-volatile memory of a simulated SE (bytes of its NVM image, specs/secure-element.md
#: "Memory"): room for both applets with 16 mdocs carrying the largest portrait, and more
DEFAULT_NVM = 1 << 20
#: Bounds of a phone's NVM: above the factory image, below what a phone's eSE offers
NVM_MIN, NVM_MAX = 2048, 64 << 20


def factory_state(*, max_failed_authentications: int = DEFAULT_MAX_FAILED_AUTHENTICATIONS,
                  sequence_counter: int = 0, nvm_capacity: int = DEFAULT_NVM,
                  maker: SeMaker | None = None, kloc: ec.EllipticCurvePublicKey | None = None) -> dict:
    """The image of an SE fresh from the factory: ISD with the factory keyset, and
    ``nvm_capacity`` bytes of NVM for its image. With a ``maker``, also the SCP11b key pair
    the SE makes at manufacture and the maker's certificate for it; with a ``kloc`` too (the
    CA key of the OCEs its issuer allows to load keys, PK.CA-KLOC.ECDSA, P-256), that key
    and an SCP11a key pair with its certificate."""
    cplc = new_cplc()
    state = {
        "nvm_capacity": nvm_capacity,
        "version": STATE_VERSION,
        "cplc": cplc,
        "kdd": key_diversification_data(cplc),
        "card_life_cycle": CARD_SECURED,
        "isd": {"aid": ISD_AID, "life_cycle": SD_PERSONALIZED},
        "keysets": {FACTORY_KVN: {"enc": FACTORY_KEY, "mac": FACTORY_KEY, "dek": FACTORY_KEY}},
        "sequence_counter": sequence_counter,
        "failed_authentications": {},
        "blocked_kvns": [],
        "max_failed_authentications": max_failed_authentications,
        "applications": [],
    }
    if maker is not None:
        sk = ec.generate_private_key(ec.SECP256R1())  # made in the SE; only its public key leaves
        cert = maker.certify(sk.public_key(), state["kdd"], bytes.fromhex(decode_cplc(cplc)["ic_serial_number"]))
        state["scp11"] = {"kvn": SCP11B_KVN, "sk": sk.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            "certs": [cert]}
        if kloc is not None:
            if not isinstance(kloc, ec.EllipticCurvePublicKey) or kloc.curve.name != "secp256r1":
                raise ValueError("the CA-KLOC key must be a P-256 public key")
            ska = ec.generate_private_key(ec.SECP256R1())
            cert_a = maker.certify(ska.public_key(), state["kdd"],
                                   bytes.fromhex(decode_cplc(cplc)["ic_serial_number"]), "SCP11a")
            state["scp11a"] = {"kvn": SCP11A_KVN, "sk": ska.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
                "certs": [cert_a]}
            state["kloc"] = kloc_record(KLOC_KVN, kloc)
    elif kloc is not None:
        raise ValueError("a CA-KLOC key needs a maker: SCP11a needs the SE's certified key")
    return state


def kloc_record(kvn: int, key: ec.EllipticCurvePublicKey) -> dict:
    """The image's CA-KLOC entry: the key's version, its SubjectPublicKeyInfo, and the CA's
    identifier GET DATA FF33 answers (RFC 5280's first method, until STORE DATA names
    another: the identifier the CA's certificate carries)."""
    return {"kvn": kvn, "pk": key.public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo),
            "ski": x509.SubjectKeyIdentifier.from_public_key(key).digest}


_SCALARS = frozenset((int, bytes, str, type(None)))
_KEY_TYPES = frozenset((int, str, bytes))


def check_plain(value: object, where: str = "state") -> None:
    """Refuse what the image must never hold: anything but int, bytes, str, None, lists
    (tuples) and maps. In particular no ``bool`` and no ``float``: Python's ``==`` takes
    ``True`` for ``1`` and ``1.0`` for ``1``, and the SE decides "nothing changed, nothing to
    write" by ``==`` (:class:`StateEncoder`), so a field that went from 1 to True would
    never reach the image. Every value is checked when it is first encoded, so such a type
    cannot enter the image unnoticed. Raises :class:`SeStateError` naming the path."""
    scalars, key_types = _SCALARS, _KEY_TYPES
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is dict:
            if not key_types.issuperset(map(type, v)):
                break
            extend(v.values())
        elif t is list or t is tuple:
            extend(v)
        elif t not in scalars:
            break
    else:
        return
    raise SeStateError(_first_unplain(value, where))


def _first_unplain(value: object, at: str) -> str:
    """Where :func:`check_plain` failed, and why (walked again, with paths, only then)."""
    t = type(value)
    if t is dict:
        for k, item in value.items():
            if type(k) not in _KEY_TYPES:
                return f"{at}: key {k!r} of type {type(k).__name__} (int, str or bytes only)"
            why = _first_unplain(item, f"{at}[{k!r}]")
            if why:
                return why
        return ""
    if t is list or t is tuple:
        return next((w for i, item in enumerate(value) if (w := _first_unplain(item, f"{at}[{i}]"))), "")
    if t in _SCALARS:
        return ""
    return (f"{at}: {t.__name__} {value!r} cannot be kept in the SE image "
            "(int, bytes, str, None, lists and maps only: == would take True for 1)")


def encode_state(state: dict) -> bytes:
    check_plain(state)
    return cbor2.dumps(state, canonical=True)


class _Unplain(Exception):
    """Raised inside :func:`_ordered_copy` at the first value the image must not hold."""


def _ordered_copy(value: object) -> object:
    """A copy of a plain ``value`` (:func:`check_plain`) that cbor2 encodes canonically
    without being asked to: every map's keys in canonical order (:func:`_key_order`),
    tuples as lists (as decoding the image gives them back). Raises :class:`_Unplain` at
    the first value that is not plain.

    Canonical CBOR (RFC 7049 3.9) differs from cbor2's plain encoding only in the order
    of map keys and in float widths; an image holds no floats, and cbor2 writes a map in
    its insertion order, every integer and length in its shortest form and every string
    with a definite length, so ``cbor2.dumps(_ordered_copy(v))`` is
    ``cbor2.dumps(v, canonical=True)`` byte for byte (tests/test_se_image_file.py checks
    both on random plain values) at a fraction of the cost: cbor2's canonical mode encodes
    each key again to sort it, ~30 us for a JPKI applet's record. The copy also serves as
    the encoder's unaliased copy of what it wrote (no decode of the bytes for that)."""
    t = type(value)
    if t is dict:
        keys = tuple(value)
        if not _KEY_TYPES.issuperset(map(type, keys)):  # before the lookup: True == 1
            raise _Unplain
        order = _ORDERS.get(keys)
        if order is None:
            order = tuple(sorted(keys, key=_key_order))
            if len(_ORDERS) < 256:  # a snapshot builds its maps with the same keys each time
                _ORDERS[keys] = order
        out = {}
        for k in order:
            v = value[k]
            tv = type(v)
            out[k] = v if tv is bytes or tv is int or tv is str or v is None else _ordered_copy(v)
        return out
    if t is list or t is tuple:
        items = []
        for v in value:
            tv = type(v)
            items.append(v if tv is bytes or tv is int or tv is str or v is None else _ordered_copy(v))
        return items
    if t is bytes or t is int or t is str or value is None:
        return value
    raise _Unplain


#: canonical key orders of the maps seen, by their keys in insertion order
_ORDERS: dict[tuple, tuple] = {}


def _plain_encoding(value: object, where: str) -> tuple[object, bytes]:
    """``value`` checked (:func:`check_plain`, raising :class:`SeStateError` naming
    ``where``), its unaliased copy and its canonical encoding (:func:`_ordered_copy`)."""
    try:
        copy = _ordered_copy(value)
    except _Unplain:
        raise SeStateError(_first_unplain(value, where)) from None
    return copy, cbor2.dumps(copy)


def _image_encoding(value: object) -> bytes:
    """The canonical encoding of a value read from the image (which, written before the
    image refused booleans, may hold one: encoded by cbor2's canonical mode then)."""
    try:
        return cbor2.dumps(_ordered_copy(value))
    except _Unplain:
        return cbor2.dumps(value, canonical=True)


def _key_order(key: object) -> tuple[int, bytes]:
    """Where ``key`` sorts in a canonical map (RFC 7049 3.9: shorter encoding first, then
    bytewise), as ``cbor2.dumps(canonical=True)`` orders it."""
    t = type(key)
    cache = _KEYS.get(t)
    order = cache.get(key) if cache is not None else None
    if order is None:
        enc = cbor2.dumps(key, canonical=True)
        order = (len(enc), enc)
        if cache is not None and len(cache) < 512:  # field names, slots, FIDs, KVNs recur
            cache[key] = order
    return order


#: canonical sort keys of str and int keys, one table per exact type (True == 1, but
#: encodes differently; a bool key is refused anyway, and never cached)
_KEYS: dict[type, dict] = {str: {}, int: {}}
_APPLICATIONS = "applications"


class StateEncoder:
    """:func:`encode_state` for one SE, re-encoding only what changed since the last image.

    The image is a canonical CBOR map, and canonical encoding composes: the map is its head
    and, in canonical key order, each key's encoding followed by its value's canonical
    encoding. So each top-level entry (and each record of ``applications``, which a key
    generation or an INSTALL changes one at a time) is kept as last written: a copy of the
    value (made afresh, so nothing the SE mutates aliases it) and its
    bytes. :meth:`encode` compares the live state with those copies (as the whole state was
    compared with the whole image before) and encodes only the entries that differ; the
    result is byte for byte ``encode_state(state)`` (tests compare the two). Values are
    checked and encoded through :func:`_ordered_copy`, whose result is also the copy kept."""

    def __init__(self, image: dict) -> None:
        """``image``: the state the image on disk holds, decoded (not the live state);
        its entries are encoded when first needed."""
        self._top: dict[object, list] = {k: [v, None] for k, v in image.items()
                                         if k != _APPLICATIONS}
        apps = image.get(_APPLICATIONS)
        self._apps: list[list] | None = [[a, None] for a in apps] \
            if type(apps) is list else None
        if _APPLICATIONS in image and self._apps is None:
            self._top[_APPLICATIONS] = [apps, None]
        self._view = image  # the copies as one map: an unchanged state compares equal
        self._keys: tuple = ()
        self._order: tuple[tuple[object, bytes], ...] = ()
        self._broken = False  # a call raised half way: the copies may be ahead of the image

    def _rebuild_view(self) -> None:
        view = {k: e[0] for k, e in self._top.items()}
        if self._apps is not None:
            view[_APPLICATIONS] = [e[0] for e in self._apps]
        self._view = view

    @staticmethod
    def _entry(entry: list, value: object, where: str) -> bool:
        """Bring ``entry`` ([copy, bytes]), which compared unequal, to ``value``; whether
        its encoding changed."""
        copy, enc = _plain_encoding(value, where)
        if entry[1] is None:
            entry[1] = _image_encoding(entry[0])
        changed = enc != entry[1]  # equal once encoded: a tuple where the image has a list
        entry[0], entry[1] = copy, enc
        return changed

    def encode(self, state: dict, *, force: bool = False) -> bytes | None:
        """The canonical image of ``state``, or None when it encodes as the last one did
        (``force``: the image all the same).

        A refused value (:func:`check_plain`) raises after the entries before it were
        brought to ``state``: the copies are then ahead of the image the caller holds, so
        the next call encodes the whole image whatever it compares equal to."""
        if self._broken:
            force = True
        self._broken = True  # until this call has brought every entry to ``state``
        out = self._encode(state, force)
        self._broken = False
        return out

    def _encode(self, state: dict, force: bool) -> bytes | None:
        if not force and state == self._view:
            return None  # one comparison for the commands that change nothing
        changed = False
        top = self._top
        apps = state.get(_APPLICATIONS) if type(state.get(_APPLICATIONS)) is list else None
        want = len(state) - (apps is not None)
        if want != len(top) or (apps is not None) != (self._apps is not None) \
                or any(k not in state for k in top):
            changed = True
            for k in [k for k in top if k not in state]:
                del top[k]
        for k, v in state.items():
            if k == _APPLICATIONS and apps is not None:
                continue
            entry = top.get(k)
            if entry is None:
                top[k] = list(_plain_encoding(v, f"state[{k!r}]"))
                changed = True
            elif entry[0] != v and self._entry(entry, v, f"state[{k!r}]"):
                changed = True
        if apps is not None:
            if self._apps is None:
                self._apps = []
            old = self._apps
            if len(old) != len(apps):
                changed = True
                del old[len(apps):]
            for i, app in enumerate(apps):
                if i == len(old):
                    old.append(list(_plain_encoding(app, f"applications[{i}]")))
                    changed = True
                elif old[i][0] != app and self._entry(old[i], app, f"applications[{i}]"):
                    changed = True
        else:
            self._apps = None
        self._rebuild_view()
        if not changed and not force:
            return None
        keys = tuple(state)
        if keys != self._keys:  # the canonical order of this key set, worked out once
            self._keys = keys
            self._order = tuple((k, _key_order(k)[1]) for k in sorted(keys, key=_key_order))
        parts = [map_head(len(state))]
        for k, key_bytes in self._order:
            parts.append(key_bytes)
            if k == _APPLICATIONS and apps is not None:
                parts.append(array_head(len(apps)))
                for entry in self._apps:  # type: ignore[union-attr]
                    if entry[1] is None:
                        entry[1] = _image_encoding(entry[0])
                    parts.append(entry[1])
            else:
                entry = top[k]
                if entry[1] is None:
                    entry[1] = _image_encoding(entry[0])
                parts.append(entry[1])
        return b"".join(parts)


def decode_state(raw: bytes, path: Path, *, check: bool = True) -> dict:
    """The image ``raw`` read from ``path`` as a state map (a fresh object per call), its
    shape checked (:func:`~wallet_sim.se.image_check.check_image`; ``check=False``: bytes
    already checked). Raises :class:`SeStateError` ``cannot read SE image <path>: ...``
    naming what is wrong (the CBOR, the version, the field)."""
    try:
        state = cbor2.loads(raw)
    except (ValueError, cbor2.CBORDecodeError) as e:
        raise SeStateError(f"cannot read SE image {path}: {e}") from e
    if not isinstance(state, dict) or type(state.get("version")) is not int \
            or state["version"] != STATE_VERSION:
        raise SeStateError(f"cannot read SE image {path}: unknown version "
                           f"{state.get('version')!r:.40}" if isinstance(state, dict)
                           else f"cannot read SE image {path}: not a CBOR map")
    if check:
        try:
            check_image(state)
        except SeStateError as e:
            raise SeStateError(f"cannot read SE image {path}: {e}") from None
    return state


FSYNC_ENV = "MCRED_SE_FSYNC"


def fsync_enabled() -> bool:
    """Whether ``MCRED_SE_FSYNC=1`` asks for an fsync before each rename (read per write)."""
    return os.environ.get(FSYNC_ENV, "").strip() == "1"


def write_atomically(path: Path, data: bytes, *, fsync: bool | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and ``os.replace`` it over ``path``.

    ``fsync`` None means :func:`fsync_enabled`; a failed write leaves ``path`` untouched."""
    if fsync is None:
        fsync = fsync_enabled()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # owner-only from creation, whatever the umask, and never an existing file (a link)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


IMAGE_SLOTS = (".a", ".b")


def _reserve(fd: int, size: int) -> None:
    """Allocate the first ``size`` bytes of a new file's blocks now, where the platform can
    (no delayed allocation for ext4 to resolve when the file is renamed over another)."""
    if size and hasattr(os, "posix_fallocate"):
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, size)


O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _close_all(open_slots: list) -> None:
    for i, got in enumerate(open_slots):
        if got is not None:
            open_slots[i] = None
            with contextlib.suppress(OSError):
                os.close(got[0])


class ImageFile:
    """The image file ``path`` written as a double-buffered NVM (the anti-tearing scheme of
    a card), beside it two slot files ``.se.cbor.a`` and ``.se.cbor.b``:

    1. the slot that ``path`` is *not* (by inode) is rewritten in place;
    2. a hard link to it is made beside ``path`` and ``os.replace``-d over ``path``.

    A crash in 1 leaves ``path`` on the complete old image; 2 is one atomic rename. The
    slot ``path`` left keeps its other name, so no inode is created or freed per write.
    One writer per image at a time (the TSM's per-SE lock); a reader opens ``path`` and
    reads a whole image.

    The slot files are opened once and kept open (their inodes known from ``fstat``), so a
    write is ``pwrite``, ``fstat``, ``link``, ``rename``: no ``stat``, ``open`` and
    ``close`` of a slot each time. Slot files are never replaced by name (only written
    in place), so the open files stay the slots; an owner that sees the image changed by
    another writer calls :meth:`close` before going on (the SE does, when it reloads)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        base = Path(path)
        self._slots = tuple(str(base.with_name(f".{base.name}{s}")) for s in IMAGE_SLOTS)
        self._switch = str(base.with_name(f".{base.name}.switch"))
        #: each slot's file as :meth:`write` keeps it open: (fd, inode), None until needed
        self._open: list[tuple[int, int] | None] = [None] * len(IMAGE_SLOTS)
        weakref.finalize(self, _close_all, self._open)

    def create(self, data: bytes, *, fsync: bool | None = None) -> None:
        """Make a new image ``data`` where there is none (a phone being made): both slot
        files are written whole and ``path`` is created as a hard link to the first, so the
        NVM's two banks exist from manufacture and no command has to create (and, on ext4,
        pay 0.3-0.9 ms for) a file. Their blocks are reserved before the data goes in
        (``posix_fallocate``), so the first switches do not make ext4 flush them either.
        Raises ``FileExistsError`` if ``path`` exists; a crash before the link leaves no
        image (and slot files the first :meth:`write` reuses)."""
        if fsync is None:
            fsync = fsync_enabled()
        for slot in self._slots:
            fd = os.open(slot, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _reserve(fd, len(data))
                view, done = memoryview(data), 0
                while done < len(data):
                    done += os.pwrite(fd, view[done:], done)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        os.link(self._slots[0], self.path)

    def _slot(self, i: int) -> tuple[int, int]:
        """Slot ``i``'s file, open for writing (created if missing), and its inode."""
        got = self._open[i]
        if got is None:
            fd = os.open(self._slots[i], os.O_WRONLY | os.O_CREAT | O_CLOEXEC, 0o600)
            try:
                got = (fd, os.fstat(fd).st_ino)
            except BaseException:
                os.close(fd)
                raise
            self._open[i] = got
        return got

    def close(self) -> None:
        """Close the slot files kept open (the next :meth:`write` opens them again)."""
        _close_all(self._open)

    def write(self, data: bytes, *, fsync: bool | None = None,
              active_inode: int | None = None) -> tuple[int, int, int]:
        """Replace the image with ``data``, all or nothing. ``fsync`` None means
        :func:`fsync_enabled` (the slot is synced before the switch). ``active_inode``:
        the inode ``path`` names, when the caller has just seen it (saves a ``stat``).
        Returns the new image's (inode, mtime in ns, size), as ``stat(path)`` gives them
        after the switch (the switch changes names, not the file)."""
        if fsync is None:
            fsync = fsync_enabled()
        active = active_inode
        if active is None:
            try:
                active = os.stat(self.path).st_ino
            except FileNotFoundError:
                active = None
        i = 0
        fd, inode = self._slot(0)
        if inode == active:
            i = 1
            fd, inode = self._slot(1)
        slot = self._slots[i]
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.pwrite(fd, view[done:], done)
        st = os.fstat(fd)
        if st.st_size != len(data):  # the slot held a longer image: cut it
            os.ftruncate(fd, len(data))
            st = os.fstat(fd)
        if fsync:
            os.fsync(fd)
        try:
            os.link(slot, self._switch)
        except FileExistsError:  # left by a crash between link and replace
            os.unlink(self._switch)
            os.link(slot, self._switch)
        try:
            os.replace(self._switch, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._switch)
            raise
        return (st.st_ino, st.st_mtime_ns, st.st_size)
