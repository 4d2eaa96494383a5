"""Who may hold which JPKI certificate.

The signing certificate (署名用電子証明書) carries the holder's basic four data and stands
for a registered seal (実印): it is, in principle, not issued to a holder under 15 (seed
004, 「15歳未満の者に署名用電子証明書は原則発行されない」; as the Basic Resident Register
card did). The user-authentication certificate is issued at any age (under 15, a legal
representative sets its PIN). Age is reckoned on the day of issue in Japan
(:mod:`protocols.birthdays`: a year older from the birthday on, 29 February on 1 March in a
common year). The "in principle" exceptions (a municipality's decision) are not simulated.
"""

from __future__ import annotations

import datetime as dt

from protocols.birthdays import age_on, turns

#: The youngest age at which a signing certificate is issued.
SIGNING_MIN_AGE = 15


def signing_eligible(birth_date: dt.date, on: dt.date) -> bool:
    """Whether a holder born on ``birth_date`` may be issued a signing certificate on ``on``
    (a date in Japan)."""
    return age_on(birth_date, on) >= SIGNING_MIN_AGE


def signing_eligible_from(birth_date: dt.date) -> dt.date:
    """The first day a holder born on ``birth_date`` may be issued a signing certificate."""
    return turns(birth_date, SIGNING_MIN_AGE)


def signing_refusal(birth_date: dt.date, on: dt.date) -> str | None:
    """Why no signing certificate is issued on ``on`` to a holder born on ``birth_date``, or
    None when one may be."""
    if signing_eligible(birth_date, on):
        return None
    return (f"the holder is {age_on(birth_date, on)} on {on.isoformat()}, under {SIGNING_MIN_AGE}: "
            "no signing certificate (署名用電子証明書) is issued to a holder under "
            f"{SIGNING_MIN_AGE} (from {signing_eligible_from(birth_date).isoformat()})")
