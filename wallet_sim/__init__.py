"""The phone: a GlobalPlatform secure element simulator with its applets, and the wallet
app's data directory. Public API (specs/secure-element.md)::

    phone_id = create_phone(home, model="...")
    se = open_secure_element(phone_id, home)
    se.transmit(apdu) -> data || SW1 SW2
    list_phones(home); factory_reset(phone_id, home); describe(phone_id, home)
"""

from wallet_sim.phone import (
    app_dir,
    create_phone,
    data_home,
    describe,
    factory_reset,
    list_phones,
    open_secure_element,
)
from wallet_sim.se.errors import PhoneNotFoundError, PhoneStateError, SeError, SeStateError
from wallet_sim.se.runtime import SecureElement

describe_phone = describe

__all__ = [
    "PhoneNotFoundError", "PhoneStateError", "SeError", "SeStateError", "SecureElement", "app_dir",
    "create_phone",
    "data_home", "describe", "describe_phone", "factory_reset", "list_phones", "open_secure_element",
]
