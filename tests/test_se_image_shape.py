"""A phone's files as the SE simulator loads them (specs/secure-element.md, Persistence):
``se.cbor`` is checked field by field when it is loaded, ``phone.cbor`` when it is read,
and whatever they hold (random bytes, a cut, a flipped bit, a field of another type) the
phone either works or refuses with its typed error naming what is wrong: never a
``TypeError`` in a command, ``mcred phone show`` or the host's JPKI flow."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_provision_e2e import HOLDER

import wallet_sim
from mcred import jpki_flow
from mcred.context import Context
from mcred.provision import parse_holder, provision
from wallet_sim.se import store

JPKI_AID = bytes.fromhex("D392F000260100000001")
MDOC_AID = bytes.fromhex("F06D63726564020101")
#: commands that read every part of the image the ISD and the applets use
APDUS = [bytes.fromhex(h) for h in (
    "00A4040000", "80CA9F7F00", "80CA00E000", "80CA00C100", "80CAFF2100", "80CA006600",
    "8050000008" + "11" * 8,  # INITIALIZE UPDATE: keysets, KDD, sequence counter
    "8482330010" + "00" * 16,  # EXTERNAL AUTHENTICATE, a wrong cryptogram: failure counters
    "80CABF2106A604830201" + "13",  # the SCP11b certificates
    "80F24000024F0000",
    "00A404000A" + JPKI_AID.hex(), "00A4020C02001B", "0020008000", "0020008006414243313233",
    "00A4020C020001", "00B0000004", "00A4020C020006", "00B0000010",
    "00A4040009" + MDOC_AID.hex(), "80CA000000",
)]


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """A provisioned phone (both applets personalised): its id, data directory and image."""
    home = tmp_path_factory.mktemp("shape") / "home"
    ctx = Context.open(home)
    pid = ctx.new_phone()  # SCP11a and SCP11b keys, the TSM's CA-KLOC key
    provision(ctx, pid, parse_holder(dict(HOLDER, pin="1234", password="ABC123")), key_type="p384",
              mdoc_batch=1)
    image = home / "phones" / pid / store.SE_FILE
    return {"id": pid, "home": home, "image": image, "raw": image.read_bytes()}


@pytest.fixture(autouse=True)
def _image_restored(phone):
    """Each test starts from the provisioned image, whatever the one before left."""
    _put(phone, phone["raw"])
    yield
    _put(phone, phone["raw"])


def _put(phone, data: bytes) -> None:
    """``data`` as the phone's se.cbor (a new file: the NVM banks keep what they hold)."""
    phone["image"].unlink()
    phone["image"].write_bytes(data)


def _with(raw: bytes, change) -> bytes:  # noqa: ANN001
    state = cbor2.loads(raw)
    change(state)
    return cbor2.dumps(state)


@pytest.mark.parametrize("change, field", [
    (lambda s: s["applications"].__setitem__(0, "zz"), "applications[0]: a CBOR text string"),
    (lambda s: s.__setitem__("sequence_counter", "abc"), "sequence_counter: text string 'abc'"),
    (lambda s: s.__setitem__("sequence_counter", 1 << 24), "sequence_counter: integer 16777216"),
    (lambda s: s.__setitem__("sequence_counter", True), "sequence_counter: boolean True"),
    (lambda s: s.pop("cplc"), "cplc: missing"),
    (lambda s: s.__setitem__("kdd", b"short"), "kdd: 5 bytes, not 10"),
    (lambda s: s.__setitem__("keysets", {}), "keysets: none"),
    (lambda s: s["keysets"].__setitem__("1", s["keysets"].pop(next(iter(s["keysets"])))), "keysets['1']: the key"),
    (lambda s: next(iter(s["keysets"].values())).__setitem__("enc", b"k" * 15), ".enc: 15 bytes"),
    (lambda s: s["failed_authentications"].__setitem__(0x30, -1), "failed_authentications[48]"),
    (lambda s: s.__setitem__("blocked_kvns", ["30"]), "blocked_kvns[0]"),
    (lambda s: s["applications"][0].__setitem__("life_cycle", 256), "applications[0].life_cycle"),
    (lambda s: s["applications"][1].pop("state"), "applications[1].state: missing"),
    (lambda s: s["isd"].__setitem__("aid", "A000000151000000"), "isd.aid: text string"),
    (lambda s: s["scp11"].__setitem__("sk", b"\x30\x03\x02\x01\x01"), "scp11.sk: not a P-256 private key"),
    (lambda s: s["scp11a"]["certs"].__setitem__(0, b"\x30\x00"), "scp11a.certs[0]: not an X.509"),
    (lambda s: s["kloc"].__setitem__("pk", s["scp11"]["certs"][0]), "kloc.pk: not a P-256 public key"),
    (lambda s: s["kloc"].__setitem__("allow", [0]), "kloc.allow[0]"),
    (lambda s: s.__setitem__("version", 2), "unknown version 2"),
])
def test_an_image_of_the_wrong_shape_is_refused_naming_the_field(phone, change, field):
    _put(phone, _with(phone["raw"], change))
    for attempt in (lambda: wallet_sim.open_secure_element(phone["id"], phone["home"]),
                    lambda: wallet_sim.describe(phone["id"], phone["home"])):
        with pytest.raises(wallet_sim.SeStateError) as info:
            attempt()
        assert str(info.value).startswith(f"cannot read SE image {phone['image']}: ")
        assert field in str(info.value)


def test_fields_an_older_image_lacks_and_fields_it_does_not_know_are_taken(phone):
    def older(s):
        for name in ("nvm_capacity", "scp11", "scp11a", "kloc"):
            s.pop(name)
        s["made_by_a_later_version"] = [1, b"x"]

    _put(phone, _with(phone["raw"], older))
    se = wallet_sim.open_secure_element(phone["id"], phone["home"])
    assert se.transmit(bytes.fromhex("80CA9F7F00"))[-2:] == b"\x90\x00"
    assert wallet_sim.describe(phone["id"], phone["home"])["secure_element"]["security_domains"][0]["scp11_keys"] == []


@pytest.mark.parametrize("content, why", [
    (b"", "premature end of stream"),
    (b"garbage", "premature end of stream"),
    (cbor2.dumps("abc"), "a CBOR text string, not a map"),
    (cbor2.dumps({"id": "x", "model": 7}), "model: a CBOR integer, not a text string"),
])
def test_a_phone_record_that_cannot_be_read_is_the_phones_typed_error(phone, content, why):
    """``phone.cbor`` empty or garbage was ``CBORDecodeEOF`` or ``AttributeError: 'str'
    object has no attribute 'get'`` in ``mcred phone show``."""
    record = phone["image"].with_name("phone.cbor")
    kept = record.read_bytes()
    record.write_bytes(content)
    try:
        with pytest.raises(wallet_sim.PhoneStateError, match=f"cannot read phone record {record}: .*{why}"):
            wallet_sim.describe(phone["id"], phone["home"])
    finally:
        record.write_bytes(kept)
    assert wallet_sim.describe(phone["id"], phone["home"])["model"] == "mcred-sim-1"


def _app_state(state: dict, aid: bytes) -> dict:
    return next(a for a in state["applications"] if a["aid"] == aid)["state"]


_JPKI_SECRET = lambda s: next(iter(_app_state(s, JPKI_AID)["secrets"].values()))  # noqa: E731
_MDOC_SLOTS = lambda s: _app_state(s, MDOC_AID)["slots"]  # noqa: E731


@pytest.mark.parametrize("broken, change", [
    # what hypothesis found: False passed 0 <= tries <= 3, and the next save could not keep it
    (JPKI_AID, lambda s: _JPKI_SECRET(s).__setitem__("tries_left", False)),
    (JPKI_AID, lambda s: _JPKI_SECRET(s).__setitem__("salt", False)),  # bytes(False) is b""
    (JPKI_AID, lambda s: _JPKI_SECRET(s).__setitem__("digest", 10**12)),  # bytes(10**12): a terabyte
    (JPKI_AID, lambda s: next(iter(_app_state(s, JPKI_AID)["keys"].values())).__setitem__("spki", 3)),
    (MDOC_AID, lambda s: _MDOC_SLOTS(s).__setitem__(True, _MDOC_SLOTS(s).pop(0))),
    (MDOC_AID, lambda s: _MDOC_SLOTS(s)[0].__setitem__("issuer_signed", 10**12)),
], ids=["tries-bool", "salt-bool", "digest-int", "spki-int", "slot-bool", "credential-int"])
def test_an_applet_state_of_another_type_is_refused_at_its_restore(phone, broken, change):
    """An applet's state is checked by the applet when the SE restores it: a field of another
    type than it writes (a boolean for a counter or a slot number, an integer for bytes)
    makes that applet answer 6F00 (its SELECT too), the other applet works, and every command
    gets an answer: none raises half way (as the save after a command did, on a boolean it
    could not keep)."""
    _put(phone, _with(phone["raw"], change))
    se = wallet_sim.open_secure_element(phone["id"], phone["home"])
    for apdu in APDUS:
        answer = se.transmit(apdu)
        assert type(answer) is bytes and len(answer) >= 2
    for aid in (JPKI_AID, MDOC_AID):
        sw = se.transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid)[-2:]
        assert sw == (bytes.fromhex("6F00") if aid == broken else bytes.fromhex("9000")), (aid.hex(), sw.hex())


# --- any mutation --------------------------------------------------------------------------

#: values of every CBOR type (and the Python types cbor2 decodes to) to put where another was
_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-1, 300),
    st.floats(allow_nan=False), st.text(max_size=6), st.binary(max_size=48),
    st.lists(st.integers(-1, 300) | st.binary(max_size=4), max_size=3),
    st.dictionaries(st.integers(-1, 4) | st.text(max_size=3), st.integers(-1, 3) | st.binary(max_size=3),
                    max_size=3),
)


def _paths(value: object, at: tuple = ()) -> list[tuple]:
    """Every path into ``value``'s maps and arrays, shallow ones first."""
    out, layer = [], [(value, at)]
    while layer:
        nxt = []
        for v, p in layer:
            items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
            for k, x in items:
                out.append(p + (k,))
                nxt.append((x, p + (k,)))
        layer = nxt
    return out


def _mutated(data, raw: bytes) -> bytes:  # noqa: ANN001 - hypothesis' data
    kind = data.draw(st.sampled_from(["swap", "drop", "cut", "flip", "bytes"]), label="kind")
    if kind == "bytes":
        return data.draw(st.binary(max_size=300), label="bytes")
    if kind == "cut":
        return raw[:data.draw(st.integers(0, len(raw) - 1), label="cut at")]
    if kind == "flip":
        out = bytearray(raw)
        for i in data.draw(st.lists(st.integers(0, len(raw) * 8 - 1), min_size=1, max_size=4), label="bits"):
            out[i // 8] ^= 1 << (i % 8)
        return bytes(out)
    state = cbor2.loads(raw)
    for _ in range(data.draw(st.integers(1, 3), label="fields")):
        paths = _paths(state)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = state
        for k in path[:-1]:
            parent = parent[k]
        if kind == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_ANY, label="value")
    return cbor2.dumps(state)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_of_an_image_loads_or_is_refused_as_the_phones_error(phone, data):
    """Random bytes, a cut, flipped bits, fields of another type or dropped: opening the SE,
    ``describe`` (``mcred phone show``), commands to the ISD and both applets, and the host's
    JPKI flow (tries left, a signer, a login) either work or raise the phone's typed error
    (``SeError``) or the host's (``jpki_flow.SeError``: a status word, or data that is not a
    certificate); a refused image is left as it was."""
    mutated = _mutated(data, phone["raw"])
    _put(phone, mutated)
    try:
        se = wallet_sim.open_secure_element(phone["id"], phone["home"])
    except wallet_sim.SeError:
        assert phone["image"].read_bytes() == mutated  # nothing written
        return
    try:
        wallet_sim.describe(phone["id"], phone["home"])
    except wallet_sim.SeError:  # phone.cbor is not mutated: the image, read again
        pytest.fail("an image that loads is described")
    for apdu in APDUS:
        answer = se.transmit(apdu)
        assert type(answer) is bytes and len(answer) >= 2
    for host in (lambda: jpki_flow.pin_status(se.transmit),
                 lambda: jpki_flow.se_signer(se.transmit, "sign", b"ABC123"),
                 lambda: jpki_flow.sign_challenge(se.transmit, b"1234", b"n" * 32)):
        try:
            host()
        except jpki_flow.SeError:
            pass


def test_the_unmutated_image_signs(phone):
    """The property above starts from a phone that works."""
    se = wallet_sim.open_secure_element(phone["id"], phone["home"])
    assert jpki_flow.pin_status(se.transmit) == {"auth": 3, "sign": 5}
    signature, cert = jpki_flow.sign_challenge(se.transmit, b"1234", b"n" * 32)
    assert signature and cert


def test_the_http_api_answers_an_unreadable_phone_as_a_problem_naming_it(phone):
    """``GET /phones/{id}`` (``describe``): the image or the record that cannot be read is a
    409 problem (``se-state``, ``phone-state``) saying what is wrong, not a 500."""
    from fastapi.testclient import TestClient

    from issuer.api.auth import create_token
    from mcred.service import create_app

    ctx = Context.open(phone["home"])
    h = {"Authorization": f"Bearer {create_token(ctx.sessions, ['tsm'])[1]}"}
    record = phone["image"].with_name("phone.cbor")
    kept = record.read_bytes()
    with TestClient(create_app(ctx)) as c:
        _put(phone, _with(phone["raw"], lambda s: s.__setitem__("sequence_counter", "abc")))
        r = c.get(f"/phones/{phone['id']}", headers=h)
        assert r.status_code == 409 and r.json()["type"] == "/problems/se-state", r.json()
        assert "sequence_counter" in r.json()["detail"]
        _put(phone, phone["raw"])
        record.write_bytes(b"")
        try:
            r = c.get(f"/phones/{phone['id']}", headers=h)
        finally:
            record.write_bytes(kept)
        assert r.status_code == 409 and r.json()["type"] == "/problems/phone-state", r.json()
        assert c.get(f"/phones/{phone['id']}", headers=h).status_code == 200
