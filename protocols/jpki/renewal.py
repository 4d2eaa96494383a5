"""When a JPKI certificate may be renewed (電子証明書の更新).

Both certificates run to the 5th birthday after issue, the card (an adult's) to the 10th:
half-way through every card's life its certificates expire while the card is valid, and the
holder renews the certificates alone, at the municipal office or a post office. J-LIS sends
an expiry notice (有効期限通知書) some 2 to 3 months before the expiry (seed 004,
「マイナンバーカード及び電子証明書の更新」); a renewal is taken from **3 months before** the
certificate's expiry date, and after it (an expired certificate is renewed as well: the
common case at the counter). Months are calendar months in Japan, a day that the month lacks
falling on its last day (3 months before 31 May is 28 or 29 February). Our reading, written in
specs/jpki-profile.md "Certificate renewal".
"""

from __future__ import annotations

import calendar
import datetime as dt

from protocols.birthdays import today_in_japan

#: How long before its expiry date a certificate may be renewed (the expiry notice's window)
RENEWAL_WINDOW_MONTHS = 3
#: The widest horizon an expiry-notice listing takes (days): a certificate runs at most ten
#: years (the next card's, to its 10th birthday after issue), so 3660 days reaches every
#: certificate there is; a wider one asks for nothing more (and one past the year 9999 is no
#: date at all)
NOTICE_MAX_DAYS = 3660


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` calendar months before ``day`` (the month's last day when it
    has no such day)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def expiry_date(not_after: dt.datetime) -> dt.date:
    """The last day in Japan a certificate is valid (its notAfter, 23:59:59 JST)."""
    return today_in_japan(not_after)


def renewable_from(not_after: dt.datetime) -> dt.date:
    """The first day in Japan a certificate valid until ``not_after`` may be renewed."""
    return months_before(expiry_date(not_after), RENEWAL_WINDOW_MONTHS)


def renewal_refusal(not_after: dt.datetime, now: dt.datetime) -> str | None:
    """Why a certificate valid until ``not_after`` is not renewed at ``now`` (it has more than
    :data:`RENEWAL_WINDOW_MONTHS` months left), or None when it may be."""
    today, opens = today_in_japan(now), renewable_from(not_after)
    if today >= opens:
        return None
    return (f"the certificate is valid until {expiry_date(not_after).isoformat()}: it is renewed from "
            f"{opens.isoformat()}, {RENEWAL_WINDOW_MONTHS} months before (the expiry notice's window), "
            f"not on {today.isoformat()}")
