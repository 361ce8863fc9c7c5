"""Webhook signatures exactly as the providers make them, so receivers verify sandbox posts with the SDKs' own code.

- SendGrid's Signed Event Webhook: ECDSA P-256 over SHA-256 of ``timestamp + body``, the DER signature
  base64-encoded in ``X-Twilio-Email-Event-Webhook-Signature``; the verification key is shown as
  base64 DER SubjectPublicKeyInfo (what ``sendgrid.helpers.eventwebhook.EventWebhook`` takes).
- Twilio's ``X-Twilio-Signature``: HMAC-SHA1, keyed by the account's auth token, over the full URL
  followed by every POST parameter name and value sorted by name (``twilio.request_validator``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"


class EventWebhookSigner:
    """The ECDSA key pair the sandbox signs SendGrid Event Webhook posts with."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("SendGrid's Signed Event Webhook uses ECDSA on P-256 (secp256r1)")
        self._private_key = private_key

    @classmethod
    def generate(cls) -> EventWebhookSigner:
        """A fresh key pair, kept in memory only (tests; the public key changes on every start)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_file(cls, path: Path) -> EventWebhookSigner:
        """Load the key from a PEM file, creating it (mode 0600) on first use.

        A persistent key keeps the public key stable across restarts, so a receiver configured
        with it (as with real SendGrid) keeps verifying after the sandbox container restarts.
        """
        path = Path(path)
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} does not hold an EC private key")
            return cls(key)
        signer = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = signer._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(tmp, path)
        return signer

    def public_key_base64(self) -> str:
        """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def sign(self, timestamp: str, payload: bytes) -> str:
        """Base64 DER ECDSA signature over ``timestamp + payload``."""
        signature = self._private_key.sign(timestamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature`` for a form POST of ``params`` to ``url``."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
