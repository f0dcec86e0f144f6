"""A throw-away certificate authority and server certificate for the ARM emulator.

The management SDK refuses bearer tokens over plain http (fidelity trap 8), so the ARM half serves HTTPS. Clients
trust ``ca.pem`` through configuration (``connection_verify=`` or ``SSL_CERT_FILE``), never by turning checks off.
Keys are P-256: generating them takes a millisecond, so every start-up gets fresh ones.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from amlops_emulator.pki import Authority, cert_pem

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def generate(state_dir: Path, hosts: list[str]) -> TlsFiles:
    """Write a fresh CA and a server certificate valid for ``hosts`` (plus loopback names) into ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    authority = Authority.create("amlops emulator CA")
    cert, key = authority.issue("management.azure.emulator", server_hosts=hosts)
    files = TlsFiles(state_dir / CA_FILE, state_dir / SERVER_CERT_FILE, state_dir / SERVER_KEY_FILE)
    files.ca.write_bytes(cert_pem(authority.cert))
    files.cert.write_bytes(cert)
    files.key.write_bytes(key)
    files.key.chmod(0o600)
    return files
