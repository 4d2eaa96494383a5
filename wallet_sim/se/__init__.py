"""The GP-SE runtime: card transport, logical channels, the ISD with SCP03 and card
content management, and the applet contract (``wallet_sim.se.applet``)."""

from wallet_sim.se.errors import PhoneNotFoundError, PhoneStateError, SeError, SeStateError
from wallet_sim.se.runtime import SecureElement

__all__ = ["PhoneNotFoundError", "PhoneStateError", "SeError", "SeStateError", "SecureElement"]
