"""The phone's camera: a QR code read from a picture (a screenshot of a verifier's page, a
photo, or the PNG ``mcred present --qr`` writes), as the wallet app scans one. The picture
is decoded by Pillow and the code by zxing-cpp (the ``scan`` extra); what it carries is
handed on as text, to :meth:`wallet_sim.wallet.Wallet.cross_device` for an OpenID4VP
authorization request."""

from __future__ import annotations

from pathlib import Path

from wallet_sim.wallet import WalletError

MAX_PIXELS = 40_000_000
"""A picture larger than this (pixels) is refused before it is decoded (a decompression
bomb, or not a screenshot)."""


class ScanError(WalletError):
    """No QR code could be read from the picture; the message says why."""


def read_qr(picture: Path | bytes) -> str:
    """The text of the one QR code in ``picture`` (a file or its bytes: PNG, JPEG, ...).
    :class:`ScanError` when the scanning extra is missing, the picture does not decode, it
    holds no QR code, or several different ones."""
    try:
        import zxingcpp
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ScanError("reading a QR code from a picture needs the scan extra: pip install 'mcred[scan]' "
                        "(zxing-cpp, Pillow)") from None
    import io

    try:
        data = picture if isinstance(picture, bytes) else Path(picture).read_bytes()
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            found = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    except OSError as exc:  # unreadable file, or not a picture Pillow knows
        raise ScanError(f"the picture does not decode: {exc}") from None
    except (Image.DecompressionBombError, UnidentifiedImageError, ValueError) as exc:
        raise ScanError(f"the picture does not decode: {exc}") from None
    texts = sorted({r.text for r in found if r.valid and r.text})
    if not texts:
        raise ScanError("no QR code found in the picture")
    if len(texts) > 1:
        raise ScanError(f"{len(texts)} different QR codes in the picture: crop it to the one to scan")
    return texts[0]
