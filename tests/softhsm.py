"""A throwaway SoftHSM2 token for the HSM tests (issuer keys, TSM master key): each test
gets its own token directory and configuration (``SOFTHSM2_CONF``), so nothing touches the
machine's tokens; skipped, with what to install, where SoftHSM2 or python-pkcs11 is absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hsm import SOFTHSM2, close_all

SOFTHSM_PIN = "246810"
SOFTHSM_LABEL = "mcred"


def softhsm_missing() -> list[str]:
    """What the HSM tests need and this machine lacks."""
    missing = [what for what, ok in (
        ("softhsm2-util (Debian package softhsm2)", shutil.which("softhsm2-util")),
        (f"{SOFTHSM2} (Debian package softhsm2)", Path(SOFTHSM2).is_file())) if not ok]
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        missing.append("python-pkcs11 (pip install '.[test]')")
    return missing


@pytest.fixture
def softhsm_token(tmp_path, monkeypatch):
    """A fresh SoftHSM2 token labelled ``mcred`` in ``tmp_path`` (its own configuration)."""
    missing = softhsm_missing()
    if missing:
        pytest.skip(f"HSM test needs {', '.join(missing)}; install: apt-get install -y softhsm2")
    import pkcs11

    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", SOFTHSM_LABEL,
                    "--so-pin", "13579135", "--pin", SOFTHSM_PIN], check=True, capture_output=True)
    close_all()  # SoftHSM2 reads its configuration when initialised: start it on this one
    pkcs11.lib(SOFTHSM2).reinitialize()
    yield SOFTHSM_LABEL
    close_all()
