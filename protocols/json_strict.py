"""JSON texts read strictly (RFC 8259), for bodies whose meaning must not be ambiguous.

Python's ``json.loads`` is lenient where a security API should not be: a member name given
twice keeps the last value silently (RFC 8259 4: names SHOULD be unique, and parsers
differ on which one wins), bytes in UTF-16 or UTF-32 or behind a byte order mark are
decoded (8.1: JSON exchanged between systems MUST be UTF-8, with no BOM added), ``NaN``
and ``Infinity`` are taken (6: not JSON), and deep nesting or a very long integer fail with
Python's own exceptions (``RecursionError``, ``ValueError``). :func:`loads` answers each of
these with a :class:`JsonRefused` that names what was wrong and where.

Decision on the byte order mark: refused, not ignored (8.1 lets a parser do either). A BOM
means the sender did not follow 8.1, and the bytes it signed or hashed may not be the
bytes it meant; the answer says to send the text without it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

#: Containers nested deeper than this are refused (the services' bodies use a handful).
MAX_DEPTH = 64
#: The longest name a refusal quotes (a member name is the client's own text).
_NAME_SHOWN = 64


class JsonRefused(ValueError):
    """A JSON text refused. ``kind``: ``encoding``, ``syntax``, ``duplicate``, ``depth``,
    ``integer``, ``constant``; ``path``: a repeated member's names and indices from the top
    (empty otherwise); ``detail``: what was wrong, for a person."""

    def __init__(self, kind: str, detail: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.path = kind, detail, path


class _Object(dict):
    """A JSON object in which some member names came more than once (``repeated``)."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Object(obj)
    seen: set[str] = set()
    marked.repeated = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return marked


def _name(name: str) -> str:
    return repr(name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "...")


def max_digits() -> int:
    """The longest integer read: Python's ``sys.get_int_max_str_digits()`` (4300 by default)."""
    get = getattr(sys, "get_int_max_str_digits", None)
    return get() if get is not None and get() > 0 else 4300


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    limit = max_digits()
    if digits > limit:
        raise JsonRefused("integer", f"an integer of {digits} digits (more than {limit}, the longest "
                          "this service reads)")
    return int(text)


def _constant(name: str) -> Any:
    raise JsonRefused("constant", f"{name} is not JSON (RFC 8259 6: numbers are finite, written in digits)")


def _encoding(data: bytes) -> str:
    """``data`` decoded; refused unless UTF-8 without a byte order mark (RFC 8259 8.1)."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise JsonRefused("encoding", "the body begins with a byte order mark (EF BB BF); JSON between "
                          "systems is UTF-8 with none (RFC 8259 8.1): send it without one")
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                      (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            raise JsonRefused("encoding", f"the body is {name} (its byte order mark {bom.hex(' ').upper()}); "
                              "JSON between systems is UTF-8 (RFC 8259 8.1)")
    guess = json.detect_encoding(data)
    if guess != "utf-8":
        raise JsonRefused("encoding", f"the body looks like {guess.upper()} (NUL bytes between its "
                          "characters); JSON between systems is UTF-8 (RFC 8259 8.1)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused("encoding", f"the body is not UTF-8 (RFC 8259 8.1): {exc.reason} at byte offset "
                          f"{exc.start}") from None


def _walk(value: Any) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and repeated member names, naming where."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise JsonRefused("depth", f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, _Object):
            name = node.repeated[0]
            raise JsonRefused("duplicate", f"the member name {_name(name)} comes more than once in one "
                              "object (RFC 8259 4); this service refuses a body whose meaning is "
                              "ambiguous", (*path, name))
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in node.items() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node) if isinstance(v, dict | list))


#: Python's own report of an integer longer than its limit.
_TOO_LONG = re.compile(r"value has (\d+) digits")


def _openings(data: bytes) -> int:
    """At least how many arrays and objects ``data`` opens (brackets in strings counted too):
    none can be nested deeper than this."""
    return data.count(b"[") + data.count(b"{")


def loads(data: bytes) -> Any:
    """The value of the JSON text ``data``, read strictly (see the module's docstring);
    :class:`JsonRefused` otherwise.

    The value is walked for where a name came twice, or for its depth, only when some
    object had a name twice or the text has more brackets than :data:`MAX_DEPTH` (none can
    be nested deeper otherwise); integers are left to Python's own limit
    (``sys.get_int_max_str_digits``) unless that is switched off, and the text is decoded
    once."""
    text = _encoding(data)
    repeated: list[_Object] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:  # once per object: one call, kept short
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        marked = _pairs(items)
        repeated.append(marked)
        return marked

    limited = getattr(sys, "get_int_max_str_digits", lambda: 0)() > 0
    hooks: dict[str, Any] = {} if limited else {"parse_int": _integer}
    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=_constant, **hooks)
    except RecursionError:
        raise JsonRefused("depth", f"nesting deeper than {MAX_DEPTH} levels") from None
    except JsonRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRefused("syntax", f"not JSON: {exc.msg} at byte offset {_byte(data, exc.pos)}") from None
    except ValueError as exc:  # Python's limit on an integer's digits (json's own errors are above)
        digits = _TOO_LONG.search(str(exc))
        raise JsonRefused("integer", f"an integer of {digits.group(1) if digits else 'too many'} digits (more "
                          f"than {max_digits()}, the longest this service reads)") from None
    if repeated or (_openings(data) > MAX_DEPTH and _too_deep(value)):
        _walk(value)  # names the problem and where
    return value


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests containers deeper than :data:`MAX_DEPTH` allows (as
    :func:`_walk` judges it), level by level, without keeping paths."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        if depth >= MAX_DEPTH:
            return True
        below: list[Any] = []
        for node in level:
            below.extend([v for v in (node.values() if isinstance(node, dict) else node)
                          if isinstance(v, (dict, list))])  # noqa: UP038 - the tuple is the faster test
        level, depth = below, depth + 1
    return False


def _byte(data: bytes, char: int) -> int:
    """The byte offset of character ``char`` of the UTF-8 text ``data``."""
    return len(data.decode("utf-8")[:char].encode("utf-8"))
