"""Age attestation: the nearest ``age_over_NN`` (ISO/IEC 18013-5:2021 7.2.5, "nearest 'true'
attestation above request"). Pure: which element answers a request, and what an answer says.

A reader asking for ``age_over_NN`` asks whether the holder is NN or over. When the mdoc does
not hold that element it returns, in its place, the ``age_over_MM`` that answers the same
question and says least beyond it:

1. the TRUE one with the smallest MM >= NN (the holder is MM or over, so NN or over);
2. otherwise the FALSE one with the largest MM <= NN (the holder is under MM, so under NN);
3. otherwise none: nothing held answers the question (and nothing is returned for it).

A reader reads an ``age_over_MM`` it got for ``age_over_NN`` the same way round: TRUE with
MM >= NN says "NN or over", FALSE with MM <= NN says "under NN"; any other (TRUE with
MM < NN, FALSE with MM > NN) says nothing of NN, and is no answer to it. A reader shall
not request more than two age_over_NN in one request (:data:`MAX_REQUESTED`): a ladder of
thresholds would narrow the holder's age down past what any one question needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "age_over_"
#: ISO/IEC 18013-5 7.2.5: "an mdoc reader shall not request more than two age_over_NN data
#: elements" (in one request; counted here as distinct NN over the request's namespaces, so a
#: namespace that mirrors another does not let a reader ask four)
MAX_REQUESTED = 2
_NN = re.compile(r"age_over_([0-9]{2})")


def threshold(identifier: object) -> int | None:
    """The NN of an ``age_over_NN`` identifier (two digits, 00 to 99), else None."""
    if not isinstance(identifier, str) or not identifier.startswith(PREFIX):
        return None
    m = _NN.fullmatch(identifier)
    return int(m.group(1)) if m else None


def identifier(nn: int) -> str:
    """``age_over_NN`` for ``nn`` (0 to 99)."""
    if not 0 <= nn <= 99:
        raise ValueError(f"age_over_NN: NN must be 0 to 99, got {nn}")
    return f"{PREFIX}{nn:02d}"


def attestations(values: Mapping[str, Any]) -> dict[int, bool]:
    """NN -> value of the ``age_over_NN`` among one namespace's element identifier -> value;
    an element whose value is not a boolean attests nothing and is left out."""
    return {nn: v for ident, v in values.items() if (nn := threshold(ident)) is not None and type(v) is bool}


def nearest(requested: int, held: Mapping[int, bool]) -> int | None:
    """The NN of the element that answers a request for ``age_over_<requested>``, of ``held``
    (NN -> value, one namespace): the element itself when held, else by the rule of 7.2.5 (the
    TRUE one with the smallest NN above, else the FALSE one with the largest NN below), else
    None: nothing held answers it and nothing is to be returned for it."""
    if requested in held:
        return requested
    above = [nn for nn, v in held.items() if v is True and nn > requested]
    if above:
        return min(above)
    below = [nn for nn, v in held.items() if v is False and nn < requested]
    return max(below) if below else None


def answer(requested: int, returned: int, value: object) -> bool | None:
    """What ``age_over_<returned> = value`` says of ``age_over_<requested>``: True (the holder
    is ``requested`` or over), False (under ``requested``), None (nothing: TRUE below it,
    FALSE above it, or a value that is not a boolean)."""
    if value is True and returned >= requested:
        return True
    if value is False and returned <= requested:
        return False
    return None


def too_many(identifiers: Iterable[str]) -> bool:
    """Whether ``identifiers`` (every element one request asks for, any namespace) ask for more
    than :data:`MAX_REQUESTED` distinct age_over_NN."""
    return len({nn for i in identifiers if (nn := threshold(i)) is not None}) > MAX_REQUESTED


@dataclass(frozen=True)
class AgeAnswer:
    """What a document says of one ``age_over_NN`` asked in ``namespace``: the element that
    answers it (``returned``, its NN; None when none does) and that element's value."""

    namespace: str
    requested: int
    returned: int | None = None
    value: Any = None
    #: why nothing answers, when nothing does and there is more to say than "not returned"
    note: str = ""

    @property
    def over(self) -> bool | None:
        """True: the holder is ``requested`` or over; False: under it; None: not answered."""
        return None if self.returned is None else answer(self.requested, self.returned, self.value)

    def fact(self) -> str | None:
        """What the answer says of the holder (``the holder is under 21``), None when nothing."""
        over = self.over
        if over is None:
            return None
        return f"the holder is {self.requested} or over" if over else f"the holder is under {self.requested}"

    def meaning(self) -> str:
        """What the answer means for the NN asked, for a person: the fact, and the element
        that answered when it is not the one asked."""
        asked = identifier(self.requested)
        fact = self.fact()
        if fact is not None:
            if self.returned == self.requested:
                return fact
            return f"{fact} (answered by {identifier(self.returned)} = {_word(self.value)}, ISO/IEC 18013-5 7.2.5)"
        if self.returned is not None:
            return f"{asked} not answered: {identifier(self.returned)} = {_word(self.value)} says nothing of it"
        return f"{asked} not answered" + (f": {self.note}" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        # the verdict's mapping of values to JSON (verify imports this module: imported here)
        from protocols.mdoc.verify import json_value

        return {"namespace": self.namespace, "requested": identifier(self.requested),
                "returned": None if self.returned is None else identifier(self.returned),
                "value": None if self.returned is None else json_value(self.value),
                "over": self.over, "meaning": self.meaning()}


def _word(value: object) -> str:
    return "true" if value is True else "false" if value is False else repr(value)[:40]


def read(namespace: str, requested: int, disclosed: Mapping[str, Any]) -> AgeAnswer:
    """What the elements ``disclosed`` in ``namespace`` (identifier -> value) say of an
    ``age_over_<requested>`` asked there, as a reader reads them: the element itself when
    disclosed; else the disclosed age_over_MM that answers it (the nearest, should there be
    several); else none, and an age_over_MM disclosed that answers nothing is never taken
    for an answer. Attestations that contradict each other answer nothing."""
    own = identifier(requested)
    if own in disclosed:
        return AgeAnswer(namespace, requested, requested, disclosed[own])
    answering = {nn: v for ident, v in disclosed.items()
                 if (nn := threshold(ident)) is not None and answer(requested, nn, v) is not None}
    if not answering:
        return AgeAnswer(namespace, requested)
    if len({answer(requested, nn, v) for nn, v in answering.items()}) > 1:
        return AgeAnswer(namespace, requested, note="the age_over elements disclosed contradict each other")
    nn = min(answering, key=lambda m: (abs(m - requested), m))
    return AgeAnswer(namespace, requested, nn, answering[nn])
