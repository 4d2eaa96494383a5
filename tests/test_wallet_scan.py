"""The phone's camera (wallet_sim/scan.py): a QR code read from a picture by zxing-cpp, as a
wallet scans a verifier's page. The codes here are drawn by segno, the way our reader and
phone draw theirs: long OpenID4VP request URIs (a by-value request is about 1.4 KB), in PNG
and, as a screenshot pasted on a larger page, in JPEG; a picture with no code, with two, or
that is no picture, is a ScanError naming why."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("zxingcpp", reason="the scan extra (zxing-cpp, Pillow) is not installed")
import segno  # noqa: E402
from PIL import Image  # noqa: E402

from wallet_sim.scan import ScanError, read_qr  # noqa: E402

URI = "openid4vp://?client_id=redirect_uri%3Ahttps%3A%2F%2Frp.example%2Foid4vp%2Fresponses%2Fs1&nonce=" + "n" * 1300


def _png(text: str, scale: int = 4) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="l").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def test_a_long_request_uri_reads_back_from_png_and_from_a_jpeg_screenshot(tmp_path):
    path = tmp_path / "qr.png"
    path.write_bytes(_png(URI))
    assert read_qr(path) == URI
    code = Image.open(io.BytesIO(_png(URI))).convert("RGB")
    page = Image.new("RGB", (code.width + 400, code.height + 300), (240, 240, 250))  # the page around it
    page.paste(code, (200, 150))
    shot = io.BytesIO()
    page.save(shot, format="JPEG", quality=85)
    assert read_qr(shot.getvalue()) == URI


def test_what_is_no_single_qr_code_is_named(tmp_path):
    blank = io.BytesIO()
    Image.new("L", (300, 300), 255).save(blank, format="PNG")
    with pytest.raises(ScanError, match="no QR code"):
        read_qr(blank.getvalue())
    a, b = (Image.open(io.BytesIO(_png(t))).convert("L") for t in ("openid4vp://?client_id=a", "mdoc:owBjMS4w"))
    both = Image.new("L", (a.width + b.width + 40, max(a.height, b.height)), 255)
    both.paste(a, (0, 0))
    both.paste(b, (a.width + 40, 0))
    two = io.BytesIO()
    both.save(two, format="PNG")
    with pytest.raises(ScanError, match="2 different QR codes"):
        read_qr(two.getvalue())
    with pytest.raises(ScanError, match="does not decode"):
        read_qr(b"not a picture at all")
    with pytest.raises(ScanError, match="does not decode"):
        read_qr(tmp_path / "missing.png")
