"""The throwaway PKI and the kubeconfig built on it (pure, on a tmp dir)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scorefleet.dev import kubeconfig, pki

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_leaf_certificates_are_signed_by_the_ca(tmp_path: Path) -> None:
    files = pki.write_pki(tmp_path / "pki", NOW)
    ca = _load(files.ca_cert)
    for leaf in (files.serving_cert, files.admin_cert):
        cert = _load(leaf)
        cert.verify_directly_issued_by(ca)
        assert cert.not_valid_after_utc - NOW >= dt.timedelta(days=364)


def test_admin_cert_is_cluster_admin_by_group(tmp_path: Path) -> None:
    files = pki.write_pki(tmp_path / "pki", NOW)
    subject = _load(files.admin_cert).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    eku = _load(files.admin_cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_serving_cert_names_loopback_and_the_kubernetes_service(tmp_path: Path) -> None:
    files = pki.write_pki(tmp_path / "pki", NOW)
    san = _load(files.serving_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    ips = san.value.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address(pki.SERVICE_IP) in ips
    assert "kubernetes.default.svc" in san.value.get_values_for_type(x509.DNSName)


def test_private_keys_are_private_and_sa_keys_match(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    files = pki.write_pki(tmp_path / "pki", NOW)
    for key in (files.ca_key, files.serving_key, files.admin_key, files.sa_key):
        assert key.stat().st_mode & 0o077 == 0
    private = serialization.load_pem_private_key(files.sa_key.read_bytes(), None)
    public = serialization.load_pem_public_key(files.sa_pub.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]


def test_python_ssl_loads_the_admin_credentials(tmp_path: Path) -> None:
    # What the kubernetes client and Kopf do with the kubeconfig's cert data.
    files = pki.write_pki(tmp_path / "pki", NOW)
    ctx = ssl.create_default_context(cafile=str(files.ca_cert))
    ctx.load_cert_chain(str(files.admin_cert), str(files.admin_key))


def test_kubeconfig_embeds_credentials_and_selects_its_context(tmp_path: Path) -> None:
    files = pki.write_pki(tmp_path / "pki", NOW)
    path = kubeconfig.write(
        tmp_path / "kubeconfig",
        "https://127.0.0.1:6443",
        files.ca_cert,
        files.admin_cert,
        files.admin_key,
    )
    assert path.stat().st_mode & 0o077 == 0
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == kubeconfig.CONTEXT
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    import base64

    ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"])
    assert ca == files.ca_cert.read_bytes()
    (user,) = config["users"]
    assert base64.b64decode(user["user"]["client-key-data"]) == files.admin_key.read_bytes()
