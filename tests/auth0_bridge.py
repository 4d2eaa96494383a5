"""Test-only bridge to @auth0/mdl, a TypeScript mdoc verifier (interop/auth0-mdl/verify.mjs):
one JSON request on stdin, one JSON answer on stdout, in a node process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

BRIDGE = Path(__file__).resolve().parents[1] / "interop" / "auth0-mdl"
# The lock file pins every version; `npm ci` would refuse it because the registry here lists
# none of cbor-extract's optional per-platform binaries, so install from it without saving.
INSTALL = ["npm", "install", "--no-save", "--ignore-scripts", "--no-audit", "--no-fund"]


def unavailable() -> str | None:
    """Why the bridge cannot run here (None: it can). Installs the pinned package with
    ``npm install --no-save`` (package-lock.json) on first use
    where npm is present, as .ci/run does."""
    if shutil.which("node") is None:
        return "needs node (Debian package nodejs) to run @auth0/mdl"
    if not (BRIDGE / "node_modules" / "@auth0" / "mdl").is_dir():
        if shutil.which("npm") is None:
            return f"needs npm to install @auth0/mdl: cd {BRIDGE} && {' '.join(INSTALL)}"
        done = subprocess.run(INSTALL, cwd=BRIDGE, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return f"`{' '.join(INSTALL)}` in {BRIDGE} failed: {done.stderr.strip()[-300:]}"
    return None


def call(request: dict) -> dict:
    done = subprocess.run(["node", "verify.mjs"], cwd=BRIDGE, input=json.dumps(request),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
