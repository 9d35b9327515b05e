"""A certificate authority and a broker certificate for a SASL_SSL test cluster, made with openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

from iris_app.kafka_server import BrokerTLS


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> Path:
    """A self-signed CA in `folder` (name.pem, name.key); the certificate's path."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)  # fmt: skip
    return folder / f"{name}.pem"


def make_broker_tls(folder: Path) -> BrokerTLS:
    """A CA and a broker certificate it signed, for 127.0.0.1 and localhost."""
    ca = make_ca(folder, "ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "broker.key", "-out", "broker.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "broker.crt", cwd=folder)  # fmt: skip
    pem = folder / "broker.pem"
    pem.write_text((folder / "broker.key").read_text() + (folder / "broker.crt").read_text())
    return BrokerTLS(ca_file=ca, broker_pem=pem)
