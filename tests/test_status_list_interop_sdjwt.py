"""A second, independent Token Status List implementation reads ours, and ours reads it:
@sd-jwt/jwt-status-list (TypeScript, draft-ietf-oauth-status-list; pako for zlib) in node.

Ours go out as the bytes a reader fetches: the ``lst`` of a signed Status List Token (CWT),
for 1, 2, 4 and 8 bits per entry, sizes that do not fill the last byte, and a list large
enough for the Z_RLE strategy our issuer uses above 16 KB. Theirs come back compressed by
pako at level 9 and go through our decoder. Both sides must see the same status at every
index: the bit order (least significant first) and the zlib framing are what the two
implementations share, and neither was written from the other."""

from __future__ import annotations

import base64
import random

import pytest
from node_bridge import NodeBridge
from test_status_token import token

from protocols import cbor
from protocols.status import CLAIM_STATUS_LIST, StatusList

SDJWT = NodeBridge("sd-jwt-status-list", "@sd-jwt/jwt-status-list", "lists.mjs")
why = SDJWT.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"@sd-jwt/jwt-status-list interop: {why}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _lst_on_the_wire(status_list: StatusList) -> bytes:
    """The ``lst`` of our signed token for ``status_list``, read out of the CWT's claims."""
    signed = cbor.loads(token(status_list))
    claims = cbor.loads(signed.value[2])
    return claims[CLAIM_STATUS_LIST]["lst"]


def _set(status_list: StatusList) -> list[list[int]]:
    return [[i, status_list.get(i)] for i in range(len(status_list)) if status_list.get(i)]


def _random_list(rng: random.Random, bits: int, size: int, density: float) -> StatusList:
    return StatusList.from_statuses(
        [rng.randrange(1, 1 << bits) if rng.random() < density else 0 for _ in range(size)], bits)


CASES = [(1, 16, [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]),  # the draft's examples
         (2, 12, [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3])]


def test_the_draft_examples_are_the_same_bytes_both_ways():
    ours = [StatusList.from_statuses(statuses, bits) for bits, _, statuses in CASES]
    theirs = SDJWT.call({"mode": "write", "lists": [
        {"size": size, "bits": bits, "set": [[i, s] for i, s in enumerate(statuses) if s]}
        for bits, size, statuses in CASES]})["lists"]
    assert [_unb64(t["lst"]) for t in theirs] == [o.compress() for o in ours] == [
        bytes.fromhex("78dadbb918000217015d"), bytes.fromhex("78da3be9f2130003df0207")]


def test_they_read_every_list_we_publish():
    rng = random.Random(18013)
    lists = [_random_list(rng, bits, size, density)
             for bits in (1, 2, 4, 8) for size in (1, 7, 8, 9, 1000) for density in (0.0, 0.3, 1.0)]
    # above 16 KB raw our issuer compresses with Z_RLE: 1,000,000 entries with 1 % revoked
    big = StatusList.from_indices(1_000_000, rng.sample(range(1_000_000), 10_000))
    lists.append(big)
    answers = SDJWT.call({"mode": "read", "lists": [
        {"lst": _b64(_lst_on_the_wire(lst)), "bits": lst.bits} for lst in lists]})["lists"]
    for lst, answer in zip(lists, answers, strict=True):
        assert "error" not in answer, answer
        assert answer["size"] == len(lst)
        assert answer["set"] == _set(lst), f"{lst.bits}-bit list of {len(lst)}"


def test_we_read_every_list_they_write():
    rng = random.Random(5218)
    wanted = [(bits, size, sorted(rng.sample(range(size), size // 5)))
              for bits in (1, 2, 4, 8) for size in (8, 64, 1000, 200_000)]
    request = [{"size": size, "bits": bits, "set": [[i, 1 + i % ((1 << bits) - 1)] for i in picked]}
               for bits, size, picked in wanted]
    answers = SDJWT.call({"mode": "write", "lists": request})["lists"]
    for asked, answer in zip(request, answers, strict=True):
        ours = StatusList.decompress(_unb64(answer["lst"]), asked["bits"])
        assert len(ours) >= asked["size"] and _set(ours) == asked["set"]
