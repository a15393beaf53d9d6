"""The local certificate authority and the one server certificate every local HTTPS server uses.

Generated once under `.georollout/tls/`; clients trust `ca.pem` explicitly
(`connection_verify=`, `REQUESTS_CA_BUNDLE`, an `ssl.SSLContext`), never by
turning verification off.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from devenv.paths import TLS_DIR

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: Path
    cert_pem: Path  # server certificate followed by its chain
    key_pem: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))


def ensure_tls(directory: Path = TLS_DIR) -> TlsFiles:
    """Return the local CA and server certificate, generating them on first use."""
    files = TlsFiles(
        ca_pem=directory / "ca.pem",
        cert_pem=directory / "server.pem",
        key_pem=directory / "server-key.pem",
    )
    if files.ca_pem.exists() and files.cert_pem.exists() and files.key_pem.exists():
        _write_ca_crt(files)
        return files
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="georollout local CA")
    server = ca.issue_cert(*SERVER_NAMES)
    # Write the key first with tight permissions, the CA last: its presence marks
    # a complete set for the next caller.
    files.key_pem.touch(mode=0o600, exist_ok=True)
    server.private_key_pem.write_to_path(str(files.key_pem))
    server.cert_chain_pems[0].write_to_path(str(files.cert_pem))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_pem), append=True)
    ca.cert_pem.write_to_path(str(files.ca_pem))
    _write_ca_crt(files)
    return files


def _write_ca_crt(files: TlsFiles) -> None:
    """The CA again as `ca.crt`: containers/image tools (skopeo, podman, buildah) read a
    `--cert-dir` for `*.crt` files only, so `--dest-cert-dir .georollout/tls` trusts it."""
    crt = files.ca_pem.with_name("ca.crt")
    data = files.ca_pem.read_bytes()
    if not crt.exists() or crt.read_bytes() != data:
        crt.write_bytes(data)
