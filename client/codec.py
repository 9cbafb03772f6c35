"""Payload encryption (AES-256-GCM via `cryptography`) for everything the engine sends through Temporal,
and the codec server that lets the Web UI show decoded payloads to an operator who has the key.

With EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS set, the client (hence the worker, the CLI, the bot) encrypts
every payload its data converter writes: workflow, activity, signal, update and query arguments and
results, Schedule action arguments. Temporal stores ciphertext; search attributes, workflow ids, types,
task queues and failure messages stay readable (the Web UI's filters need the attributes).

Keys: `id:base64` pairs, comma-separated, 32 bytes each; the first encrypts, all decrypt (rotation:
put the new key first, keep the old ones until no history needs them). A payload names its key id.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE = 12


class CodecError(ValueError):
    """A bad key setting, or a payload that cannot be decrypted (unknown key id, tampered data)."""


def parse_keys(text: str) -> list[tuple[str, bytes]]:
    """`id:base64,...` -> [(id, 32-byte key)], in order (the first encrypts)."""
    keys: list[tuple[str, bytes]] = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        key_id, sep, b64 = raw.partition(":")
        if not sep or not key_id.strip():
            raise CodecError("EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS: each entry is id:base64key")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS: key {key_id.strip()!r} is not base64") from None
        if len(key) != 32:
            raise CodecError(f"EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS: key {key_id.strip()!r} has {len(key)} bytes, "
                             "not 32 (`openssl rand -base64 32` makes one)")
        if any(k == key_id.strip() for k, _ in keys):
            raise CodecError(f"EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS: key id {key_id.strip()!r} appears twice")
        keys.append((key_id.strip(), key))
    return keys


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise CodecError("no payload key")
        self.key_id, first = keys[0]
        self._encrypt = AESGCM(first)
        self._keys = {k: AESGCM(v) for k, v in keys}

    def encrypt(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE)
            # the key id is authenticated too: a payload cannot be re-labelled to another key
            data = self._encrypt.encrypt(nonce, p.SerializeToString(), self.key_id.encode())
            out.append(Payload(metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()}, data=nonce + data))
        return out

    def decrypt(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(p)  # written before encryption was turned on, or by another client
                continue
            key_id = p.metadata.get(KEY_ID, b"").decode()
            aead = self._keys.get(key_id)
            if aead is None:
                raise CodecError(f"payload encrypted with key {key_id!r}, which EMAIL_ENGINE_TEMPORAL_PAYLOAD_KEYS "
                                 "does not hold")
            try:
                plain = aead.decrypt(p.data[:NONCE], p.data[NONCE:], key_id.encode())
            except Exception:
                raise CodecError(f"payload with key {key_id!r} does not decrypt (wrong key or altered)") from None
            out.append(Payload.FromString(plain))
        return out

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encrypt(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decrypt(payloads)
