"""A test CA made with openssl at test time, and mosquitto with two TLS listeners on ports of
their own: one where each client presents a certificate whose name is its user
(``use_identity_as_username``), one with passwords; both with deploy/mosquitto/relaxd.acl."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.clinic_process import ACL, MOSQUITTO, MOSQUITTO_PASSWD, Broker, free_port

OPENSSL = shutil.which("openssl")
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its key."""

    certificate: Path
    key: Path


class ClinicCA:
    """A CA in ``folder`` (its name ``name``) that issues server and client certificates."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.pem, self._key = folder / "ca.pem", folder / "ca.key"
        _openssl("req", "-x509", *EC, "-keyout", self._key, "-out", self.pem, "-days", "2",
                 "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, *, server: bool = False) -> Issued:
        """A certificate whose common name is ``name`` (a server's: for localhost and
        127.0.0.1 too)."""
        key, request = self.folder / f"{name}.key", self.folder / f"{name}.csr"
        certificate, extensions = self.folder / f"{name}.pem", self.folder / f"{name}.ext"
        _openssl("req", "-new", *EC, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
        usage = "serverAuth" if server else "clientAuth"
        names = "\nsubjectAltName=DNS:localhost,IP:127.0.0.1" if server else ""
        extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                              "keyUsage=critical,digitalSignature\n"
                              f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
                              f"authorityKeyIdentifier=keyid{names}\n")
        _openssl("x509", "-req", "-in", request, "-CA", self.pem, "-CAkey", self._key,
                 "-CAcreateserial", "-out", certificate, "-days", "2", "-extfile", extensions)
        key.chmod(0o644)  # mosquitto, run as root, may drop to its own user
        return Issued(certificate, key)


def _openssl(*args: object) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=60)


class TlsBroker(Broker):
    """mosquitto with the clinic's CA: ``cert_port`` takes client certificates (the name is the
    user), ``port`` passwords over TLS. ``url``: the password listener, mqtts://localhost."""

    def __init__(self, folder: Path, users: list[str], ca: ClinicCA) -> None:
        super().__init__(folder, users)
        self.ca, self.cert_port = ca, free_port()
        server = ca.issue("localhost", server=True)
        tls = (f"cafile {ca.pem}\ncertfile {server.certificate}\nkeyfile {server.key}\n"
               "tls_version tlsv1.2\n")
        user = "user root\n" if os.geteuid() == 0 else ""
        (folder / "mosquitto.conf").write_text(
            "per_listener_settings true\npersistence false\nlog_dest stderr\n"
            "log_type error\nlog_type warning\n" + user +
            f"listener {self.cert_port} 127.0.0.1\n{tls}require_certificate true\n"
            f"use_identity_as_username true\nallow_anonymous false\nacl_file {ACL}\n"
            f"listener {self.port} 127.0.0.1\n{tls}allow_anonymous false\n"
            f"password_file {folder / 'passwd'}\nacl_file {ACL}\n")

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"

    @property
    def cert_url(self) -> str:
        return f"mqtts://localhost:{self.cert_port}"


def available() -> bool:
    return bool(MOSQUITTO and MOSQUITTO_PASSWD and OPENSSL)
