"""A throwaway PKI for the local control plane, made with `cryptography` (no openssl CLI).

ECDSA P-256 everywhere: key generation is instant (RSA-2048 costs ~0.1 s a key), and the
apiserver, Go's TLS stack, Python's ssl module and the service-account token signer all
accept it. Certificates live as long as a cluster could plausibly be kept (one year).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
# The first address of --service-cluster-ip-range: in-cluster clients reach the apiserver
# through the `kubernetes` Service on it, so the serving cert must name it.
SERVICE_IP = "10.96.0.1"
SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_ca(now: dt.datetime, cn: str = "scorefleet-dev-ca") -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def issue(
    ca: KeyPair,
    now: dt.datetime,
    *,
    cn: str,
    orgs: tuple[str, ...] = (),
    server: bool = False,
    ips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
) -> KeyPair:
    """A leaf certificate: a server cert (with SANs) or a client cert (CN=user, O=groups)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans += [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(key, builder.sign(ca.key, hashes.SHA256()))


@dataclass(frozen=True)
class PkiFiles:
    """Paths of everything the components are pointed at."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def under(cls, pki_dir: Path) -> PkiFiles:
        return cls(
            ca_cert=pki_dir / "ca.crt",
            ca_key=pki_dir / "ca.key",
            serving_cert=pki_dir / "apiserver.crt",
            serving_key=pki_dir / "apiserver.key",
            admin_cert=pki_dir / "admin.crt",
            admin_key=pki_dir / "admin.key",
            sa_key=pki_dir / "sa.key",
            sa_pub=pki_dir / "sa.pub",
        )


def write_pki(pki_dir: Path, now: dt.datetime | None = None) -> PkiFiles:
    """Create a fresh CA, apiserver serving cert, admin client cert and service-account keys."""
    now = now or dt.datetime.now(dt.UTC)
    files = PkiFiles.under(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    ca = new_ca(now)
    serving = issue(
        ca, now, cn="kube-apiserver", server=True, ips=("127.0.0.1", SERVICE_IP), dns=SERVING_DNS
    )
    # system:masters is bound to cluster-admin by the apiserver's bootstrap RBAC policy.
    admin = issue(ca, now, cn="admin", orgs=("system:masters",))
    sa = ec.generate_private_key(ec.SECP256R1())
    outputs = {
        files.ca_cert: ca.cert_pem(),
        files.ca_key: ca.key_pem(),
        files.serving_cert: serving.cert_pem(),
        files.serving_key: serving.key_pem(),
        files.admin_cert: admin.cert_pem(),
        files.admin_key: admin.key_pem(),
        files.sa_key: private_key_pem(sa),
        files.sa_pub: public_key_pem(sa),
    }
    for path, data in outputs.items():
        path.write_bytes(data)
        path.chmod(0o600)
    write_apiserver_kubelet_client(files, pki_dir, now)
    return files


def load_ca(files: PkiFiles) -> KeyPair:
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key}: not an ECDSA key")
    return KeyPair(key, x509.load_pem_x509_certificate(files.ca_cert.read_bytes()))


PROMETHEUS_USER = "scorefleet-prometheus"


@dataclass(frozen=True)
class NodePki:
    """Certificates of the real node, all signed by the cluster CA."""

    kubelet_serving: tuple[Path, Path]  # the kubelet's HTTPS endpoint, for its node IP
    kubelet_client: tuple[Path, Path]  # system:node:<name> in system:nodes (Node authorizer)
    apiserver_kubelet_client: tuple[Path, Path]  # the apiserver calling kubelets (logs, exec)
    kube_proxy: tuple[Path, Path]  # system:kube-proxy (bound to system:node-proxier)
    coredns: tuple[Path, Path]  # system:coredns (bound by nodeconf.coredns_rbac)
    prometheus: tuple[Path, Path]  # scorefleet-prometheus (bound by promconf.rbac)


def apiserver_kubelet_client(pki_dir: Path) -> tuple[Path, Path]:
    """Written with the cluster PKI: the apiserver is started with it before any node exists."""
    return pki_dir / "apiserver-kubelet-client.crt", pki_dir / "apiserver-kubelet-client.key"


def write_apiserver_kubelet_client(files: PkiFiles, pki_dir: Path,
                                   now: dt.datetime | None = None) -> tuple[Path, Path]:
    now = now or dt.datetime.now(dt.UTC)
    # system:masters, like kubeadm's: the kubelet asks the apiserver (webhook) whether this
    # user may read logs or exec, and cluster-admin may.
    pair = issue(load_ca(files), now, cn="kube-apiserver-kubelet-client",
                 orgs=("system:masters",))
    paths = apiserver_kubelet_client(pki_dir)
    _write_pair(pair, paths)
    return paths


def _write_pair(pair: KeyPair, paths: tuple[Path, Path]) -> None:
    for path, data in zip(paths, (pair.cert_pem(), pair.key_pem()), strict=True):
        path.write_bytes(data)
        path.chmod(0o600)


def write_node_pki(files: PkiFiles, node_dir: Path, *, node_name: str, node_ip: str,
                   now: dt.datetime | None = None) -> NodePki:
    now = now or dt.datetime.now(dt.UTC)
    ca = load_ca(files)
    node_dir.mkdir(parents=True, exist_ok=True)
    node_dir.chmod(0o700)
    leaves = {
        "kubelet-serving": issue(ca, now, cn=node_name, server=True, ips=(node_ip,),
                                 dns=(node_name,)),
        "kubelet-client": issue(ca, now, cn=f"system:node:{node_name}",
                                orgs=("system:nodes",)),
        "kube-proxy": issue(ca, now, cn="system:kube-proxy"),
        "coredns": issue(ca, now, cn="system:coredns"),
        "prometheus": issue(ca, now, cn=PROMETHEUS_USER),
    }
    out: dict[str, tuple[Path, Path]] = {}
    for name, pair in leaves.items():
        out[name] = (node_dir / f"{name}.crt", node_dir / f"{name}.key")
        _write_pair(pair, out[name])
    return NodePki(
        kubelet_serving=out["kubelet-serving"],
        kubelet_client=out["kubelet-client"],
        apiserver_kubelet_client=apiserver_kubelet_client(files.ca_cert.parent),
        kube_proxy=out["kube-proxy"],
        coredns=out["coredns"],
        prometheus=out["prometheus"],
    )
