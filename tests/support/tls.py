"""Certificates the test session makes itself (with ``openssl``), for the TLS listeners it starts.

Nothing here is committed: every key is made in a temporary folder and removed with it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from paypost.local.servers import MongoTls, RabbitTls


@dataclass(frozen=True, slots=True)
class Certificates:
    """A test CA, a server certificate it signed for localhost and 127.0.0.1, and a CA that signed nothing."""

    ca: Path  # ca.pem: what clients trust
    cert: Path  # server.pem
    key: Path  # server.key
    key_and_cert: Path  # server-key-and-cert.pem: mongod's --tlsCertificateKeyFile
    other_ca: Path  # a client trusting only this CA refuses the server

    @property
    def rabbit(self) -> RabbitTls:
        return RabbitTls(ca_file=self.ca, cert_file=self.cert, key_file=self.key)

    @property
    def mongo(self) -> MongoTls:
        return MongoTls(certificate_key_file=self.key_and_cert, ca_file=self.ca)


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()[:500]}")


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", key, "-out", cert,
             "-subj", f"/CN=paypost test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def make_certificates(folder: Path) -> Certificates:
    """Make a CA and a server certificate (SAN DNS:localhost, IP:127.0.0.1) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _make_ca(folder, "ca")
    _, other_ca = _make_ca(folder, "other-ca")
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj", "/CN=localhost")
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                          "basicConstraints = critical, CA:FALSE\n"
                          "keyUsage = critical, digitalSignature, keyEncipherment\n"
                          "extendedKeyUsage = serverAuth\n"
                          "subjectKeyIdentifier = hash\n"
                          "authorityKeyIdentifier = keyid\n")
    _openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
             "-out", cert, "-extfile", extensions)
    key_and_cert = folder / "server-key-and-cert.pem"
    key_and_cert.write_text(key.read_text() + cert.read_text())
    key_and_cert.chmod(0o600)
    return Certificates(ca=ca, cert=cert, key=key, key_and_cert=key_and_cert, other_ca=other_ca)
