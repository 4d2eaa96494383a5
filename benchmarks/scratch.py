"""A scratch data directory for a benchmark run: SQLite in a fresh temporary directory,
whatever ``MCRED_DATABASE_URL`` the shell has, so that figures compare run to run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def scratch_context(prefix: str):  # noqa: ANN201 - (Path, mcred.context.Context)
    """A fresh temporary directory and the mcred context of its ``home`` (``MCRED_HOME``
    pointed there, no database URL): what to ``shutil.rmtree`` afterwards, and the context."""
    from mcred.context import Context

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MCRED_HOME"] = str(tmp / "home")
    os.environ.pop("MCRED_DATABASE_URL", None)
    return tmp, Context.open(tmp / "home")


def software_key(key_type: str):  # noqa: ANN201 - (sign, verify, hash algorithm)
    """A JPKI key type's key in software, the floor an SE signature is measured against:
    ``sign(data)`` (PKCS#1 v1.5 over SHA-256 for ``rsa2048``, ECDSA P-384 over SHA-384 for
    ``p384``), ``verify(signature, data)`` and the hash algorithm."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    rsa_key = key_type == "rsa2048"
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP384R1())
    digest = hashes.SHA256() if rsa_key else hashes.SHA384()

    def sign(data: bytes) -> bytes:
        return key.sign(data, padding.PKCS1v15(), digest) if rsa_key else key.sign(data, ec.ECDSA(digest))

    def verify(signature: bytes, data: bytes) -> None:
        if rsa_key:
            key.public_key().verify(signature, data, padding.PKCS1v15(), digest)
        else:
            key.public_key().verify(signature, data, ec.ECDSA(digest))

    return sign, verify, digest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(app, *, log_level: str = "warning") -> Iterator[str]:  # noqa: ANN001 - an ASGI app
    """``app`` served by uvicorn on a free local port, in a thread, while the block runs;
    yields its base URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)

