"""The station's TLS certificate for tablets: made (``relaxd ui renew-cert``) with the chair's
names and addresses in its subjectAltName and a lifetime browsers accept, and read back (its
expiry and SHA-256 fingerprint, which ``relaxd check`` and the station's About line show so a
tablet's certificate warning can be checked against it)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from relaxd.core.errors import RelaxdError

#: Browsers refuse a server certificate valid for longer than 398 days.
LIFETIME_DAYS = 397
#: ``relaxd check`` warns this long before the certificate expires.
WARN_DAYS = 30


@dataclass(frozen=True)
class CertInfo:
    not_after: datetime
    fingerprint: str  # SHA-256, colon-separated hex, as browsers show it
    names: tuple[str, ...]  # the subjectAltName entries

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


def chair_names(listen: str) -> list[str]:
    """subjectAltName entries: the hostname, its ``.local`` name, and the chair's addresses
    (``listen`` if it names one, else those the hostname resolves to)."""
    host = socket.gethostname().split(".")[0]
    names = [f"DNS:{host}", f"DNS:{host}.local", "DNS:localhost"]
    addresses = {"127.0.0.1"}
    try:
        if ipaddress.ip_address(listen) and listen not in ("0.0.0.0", "::"):
            addresses.add(listen)
    except ValueError:
        names.append(f"DNS:{listen}")
    try:
        addresses |= {str(a[4][0]) for a in socket.getaddrinfo(host, None)}
    except OSError:
        pass
    return names + [f"IP:{a}" for a in sorted(addresses)]


def make(cert: Path, key: Path, names: list[str], days: int = LIFETIME_DAYS) -> CertInfo:
    """A new self-signed key and certificate (openssl); its :class:`CertInfo`."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    tmp_key, tmp_cert = key.with_suffix(".new-key"), cert.with_suffix(".new-crt")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-days", str(days), "-nodes", "-subj", "/CN=relaxd-station",
           "-addext", "subjectAltName=" + ",".join(names),
           "-addext", "extendedKeyUsage=serverAuth",
           "-keyout", str(tmp_key), "-out", str(tmp_cert)]
    old = os.umask(0o077)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RelaxdError("openssl is not installed: sudo apt-get install openssl") from None
    finally:
        os.umask(old)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise RelaxdError(f"openssl could not make the certificate: {tail}")
    tmp_key.replace(key)
    tmp_cert.replace(cert)
    return read(cert)


def read(cert: Path) -> CertInfo:
    """The certificate's expiry, fingerprint and names; RelaxdError (one line) if unreadable."""
    try:
        pem = Path(cert).read_text()
        der = ssl.PEM_cert_to_DER_cert(pem)
        decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise RelaxdError(f"cannot read the station's certificate: {exc}", Path(cert)) from None
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]),
                                       timezone.utc)
    digest = hashlib.sha256(der).hexdigest().upper()
    names = tuple(f"{kind}:{value}" for kind, value in decoded.get("subjectAltName", ()))
    return CertInfo(not_after, ":".join(digest[i:i + 2] for i in range(0, 64, 2)), names)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The network listener's TLS (1.2 at least) with the station's certificate; RelaxdError
    (one line) if the pair cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise RelaxdError(f"cannot load the station's certificate and key: {exc}",
                          Path(cert)) from None
    return context
