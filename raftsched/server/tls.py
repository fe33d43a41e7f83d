"""TLS contexts for peer connections (optional; the files are named in the node config).

Peers use mutual TLS: each node presents its certificate and verifies the other's against the
cluster CA. Host names are not checked because peers are configured by IP address and the
cluster CA signs only cluster members; the HMAC handshake (peer_handshake.py) then binds the
node id. TLS adds what the handshake cannot: confidentiality and integrity of every frame
against an on-path attacker.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_contexts(
    cert_file: str | Path,
    key_file: str | Path,
    ca_file: str | Path,
    *,
    require_client_cert: bool = True,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server_ctx, client_ctx) for the peer listener and the peer dialer. Raises OSError or
    ssl.SSLError naming the file when a file is missing or not a certificate/key."""
    for what, path in (("certificate", cert_file), ("key", key_file), ("CA", ca_file)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"TLS {what} file not found: {path}")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server_ctx, client_ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
            ctx.load_verify_locations(cafile=str(ca_file))
        except ssl.SSLError as exc:
            raise ssl.SSLError(
                exc.errno, f"cannot load TLS files {cert_file}, {key_file}, {ca_file}: {exc}"
            ) from exc
    server_ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    client_ctx.check_hostname = False  # peers are addressed by IP; the CA is the trust anchor
    client_ctx.verify_mode = ssl.CERT_REQUIRED
    return server_ctx, client_ctx
