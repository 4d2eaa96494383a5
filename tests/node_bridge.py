"""Test-only bridges to TypeScript peers under interop/ (one folder each, with its pinned
package-lock.json and a script): one JSON request on stdin, one JSON answer on stdout, in a
node process. The pinned packages are installed with ``npm install --no-save`` on first
use where npm is present, as .ci/run does; without node or npm the tests that need a peer
skip and say why."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INTEROP = Path(__file__).resolve().parents[1] / "interop"
# The lock file pins every version; `npm ci` would refuse @auth0/mdl's lock because the
# registry here lists none of cbor-extract's optional per-platform binaries, so install
# from the lock without saving.
INSTALL = ["npm", "install", "--no-save", "--ignore-scripts", "--no-audit", "--no-fund"]


@dataclass(frozen=True)
class NodeBridge:
    folder: str  #: under interop/
    package: str  #: the npm package the script uses
    script: str

    @property
    def path(self) -> Path:
        return INTEROP / self.folder

    def unavailable(self) -> str | None:
        """Why the bridge cannot run here (None: it can); installs the package if needed."""
        if shutil.which("node") is None:
            return f"needs node (Debian package nodejs) to run {self.package}"
        if not (self.path / "node_modules" / self.package).is_dir():
            if shutil.which("npm") is None:
                return f"needs npm to install {self.package}: cd {self.path} && {' '.join(INSTALL)}"
            done = subprocess.run(INSTALL, cwd=self.path, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                return f"`{' '.join(INSTALL)}` in {self.path} failed: {done.stderr.strip()[-300:]}"
        return None

    def call(self, request: dict) -> dict:
        done = subprocess.run(["node", self.script], cwd=self.path, input=json.dumps(request),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def jwk(key) -> dict:  # noqa: ANN001 - an EC private or public key of cryptography
    """RFC 7518 section 6.2 JWK of an EC P-256/384/521 key, with ``d`` for a private key: how
    the bridges hand keys to the TypeScript peers."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ec

    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    size = (public.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public.curve.name]

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()

    numbers = public.public_numbers()
    out = {"kty": "EC", "crv": crv, "x": b64(numbers.x), "y": b64(numbers.y)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        out["d"] = b64(key.private_numbers().private_value)
    return out
