"""Device engagement on the phone (ISO/IEC 18013-5:2021 §8.2.1.1, QR form §8.2.2.3).

A fresh ephemeral EDeviceKey (P-256, cipher suite 1) per presentation; the DeviceEngagement
shown as a QR code carrying the ``mdoc:`` URI with the base64url DeviceEngagement, as a PNG
file or rendered in the terminal (segno). The private half of EDeviceKey stays in this
object and dies with the session.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segno
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.cose import CoseKey
from protocols.mdoc import DeviceEngagement


@dataclass(frozen=True)
class Engagement:
    """One presentation's DeviceEngagement and the EDeviceKey private key behind it."""

    device_engagement: DeviceEngagement
    e_device_private_key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)
    handover: Any = field(default=None, compare=False)
    """The SessionTranscript's Handover: null after a QR code, ``[HandoverSelect bytes,
    null]`` after an NFC tap (static handover, :mod:`wallet_sim.nfc`)."""

    @classmethod
    def new(cls, curve: ec.EllipticCurve | None = None, *, retrieval_methods: list | None = None) -> Engagement:
        """A fresh EDeviceKey and its DeviceEngagement; ``retrieval_methods``: the
        DeviceRetrievalMethods to name in it (data retrieval over BLE, say), none by default."""
        key = ec.generate_private_key(curve or ec.SECP256R1())
        de = DeviceEngagement.build(CoseKey.from_public_key(key.public_key()), retrieval_methods=retrieval_methods)
        return cls(de, key)

    @property
    def bytes(self) -> bytes:
        """DeviceEngagementBytes as shown: they go verbatim into the SessionTranscript."""
        return self.device_engagement.encode()

    @property
    def uri(self) -> str:
        """``mdoc:`` + base64url(DeviceEngagement) without padding (§8.2.2.3)."""
        return self.device_engagement.to_qr_uri()

    def qr(self) -> segno.QRCode:
        # byte mode, ECC level L as 18013-5 §8.2.2.3 recommends for the engagement QR
        return segno.make(self.uri, error="l", boost_error=False)

    def save_png(self, path: Path | str, *, scale: int = 4) -> Path:
        path = Path(path)
        self.qr().save(str(path), kind="png", scale=scale)
        return path

    def terminal(self) -> str:
        """The QR code as text (half-block characters) for a terminal."""
        out = io.StringIO()
        self.qr().terminal(out=out, compact=True)
        return out.getvalue()
