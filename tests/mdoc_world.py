"""The issuer's mdoc side over a migrated database (either backend) with a settable clock, as
the issuer-side mdoc tests build it: one holder per phone, the phones ``phone-1``... attached."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from issuer.holders import attach_phone, register
from issuer.keystore import MemoryKeyStore
from issuer.mdoc.service import MdocService
from issuer.mdoc.status_lists import StatusListPolicy
from mcred.db import make_engine, migrate
from protocols.cardsub import parse_holder

HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
          "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
          "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"}


class Clock:
    """A clock a test sets (``clock.now = ...``); the service reads it on every call."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def mdoc_world(db_url: str, now: dt.datetime, *, phones: int = 1, base: str = "http://issuer.test",
               **service_options) -> tuple[Engine, sessionmaker[Session], Clock, MdocService]:
    """``(engine, sessions, clock, service)``: status lists of 1024 entries unless
    ``status_policy`` is given; with several phones each holder's given name ends in its
    number (``花子2``), one holder per phone."""
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    clock = Clock(now)
    service_options.setdefault("status_policy", StatusListPolicy(size=1024))
    svc = MdocService(sessions, MemoryKeyStore(), base, clock=clock, **service_options)
    for n in range(1, phones + 1):
        holder = HOLDER if phones == 1 else dict(HOLDER, given_name=f"花子{n}")
        attach_phone(sessions, register(sessions, parse_holder(holder), now=now), f"phone-{n}")
    return engine, sessions, clock, svc
