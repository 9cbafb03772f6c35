"""DKIM private keys on disk: create missing ones (RSA, mode 0600, never overwrite), read public keys."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def ensure_key(path: Path, bits: int = 2048) -> bool:
    """Create an RSA key at `path` unless one exists. True = created, False = kept.

    The file is created with O_EXCL and mode 0600, so an existing key (or a concurrent writer) is never
    overwritten."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)  # regardless of umask
    return True


def public_key_der(path: Path) -> bytes | None:
    """SubjectPublicKeyInfo DER of the private key at `path`; None if the file does not exist.
    ValueError if it is not a readable private key."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    key = serialization.load_pem_private_key(data, password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def public_fingerprint(pem: bytes) -> str:
    """`sha256:<hex>` of the public half of a PEM private key (safe to show: it is public); a file that
    is not a private key gets `unreadable` (never its content)."""
    import hashlib

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return "unreadable"
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()
