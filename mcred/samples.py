"""The sample holder record the demo, the drills and `mcred holder example` share: what a
holder file (`mcred provision --holder FILE.json`) holds, with made-up data."""

from __future__ import annotations

#: a made-up adult, every required field of specs/card-substitute-doctype.md "The holder record"
HOLDER = {"family_name": "試験", "given_name": "太郎", "family_name_kana": "しけん",
          "given_name_kana": "たろう", "birth_date": "1985-06-15", "sex": 1,
          "address": "東京都千代田区霞が関2-1-2", "prefecture": "東京都", "municipality": "千代田区"}
