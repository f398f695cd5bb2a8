"""Command lines and health endpoints of the five components (pure: no I/O here).

Start order is dependency order; stop order is its reverse. Every listener binds 127.0.0.1 on
a port chosen at `up` time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scorefleet.dev import pki as pki_files
from scorefleet.dev.nodeconf import KWOK_NODE_SELECTOR, SERVICE_CIDR
from scorefleet.dev.pki import PkiFiles

POD_CIDR = "10.244.0.0/16"
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver}"


@dataclass(frozen=True)
class Layout:
    """Files of one cluster under its state directory."""

    state_dir: Path

    @property
    def pki(self) -> PkiFiles:
        return PkiFiles.under(self.state_dir / "pki")

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclass(frozen=True)
class Health:
    """Where a component says it is healthy.

    `authenticated`: https to the apiserver, verified against our CA, with the admin cert.
    Otherwise plain http (etcd, kwok) or https with the self-signed certificate that the
    controller-manager and scheduler make in memory; their /healthz is open to anonymous.
    """

    url: str
    authenticated: bool = False


def etcd_args(binary: Path, lay: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=scorefleet",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=scorefleet={peer}",
        "--initial-cluster-state=new",
        # Test data is thrown away with the cluster: skipping fsync makes writes far faster.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_args(binary: Path, lay: Layout, ports: Ports) -> list[str]:
    pki = lay.pki
    kubelet_cert, kubelet_key = pki_files.apiserver_kubelet_client(lay.state_dir / "pki")
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={lay.state_dir / 'pki'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        # Node: a real kubelet may read only what its own pods need (with NodeRestriction).
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Kubelets (the real node's) are reached by address, never by a name the host's
        # resolver would send off the machine, with a client certificate from our CA, and
        # their serving certificate is checked against the same CA.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={kubelet_cert}",
        f"--kubelet-client-key={kubelet_key}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        f"--service-account-issuer={ports.server}/",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        # ServiceAccount admission stays on (unlike envtest): the controller-manager runs and
        # creates each namespace's `default` ServiceAccount, and pods naming a missing one are
        # rejected as on a real cluster, which charts and RBAC tests should see.
        # TaintNodesByCondition is off: it puts the not-ready taint on every new Node, and
        # only the node lifecycle controller (off, see controller_manager_args) lifts it.
        "--disable-admission-plugins=TaintNodesByCondition",
        # PodNodeSelector and PodTolerationRestriction: a namespace's annotations put its pods
        # on the real node (nodeconf.namespace_annotations), as an admin dedicates nodes.
        "--enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=0",
    ]


def controller_manager_args(binary: Path, lay: Layout, ports: Ports) -> list[str]:
    pki = lay.pki
    kc = str(lay.kubeconfig)
    return [
        str(binary),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # No node lifecycle controller. kwok's default stages, as first run here, updated
        # node status only every ~10 min and kept no Leases (see kwok_args), so nodes went
        # NotReady after the 50 s grace, got the NoExecute unreachable taint, and the
        # controller marked their pods NotReady, which kwok never undoes (the pod is
        # already Running). kwok now heartbeats every 10-25 s, but on 2 cores shared with a
        # test suite one missed grace period would still break a test at random, and with
        # fake nodes the controller has nothing true to report. Deployment, ReplicaSet, GC,
        # namespace, ServiceAccount and the rest run as usual.
        "--controllers=*,-nodelifecycle",
        "--profiling=false",
        "--v=0",
    ]


def scheduler_args(binary: Path, lay: Layout, ports: Ports) -> list[str]:
    kc = str(lay.kubeconfig)
    return [
        str(binary),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        "--profiling=false",
        "--v=0",
    ]


def kwok_args(binary: Path, lay: Layout, ports: Ports) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={lay.kubeconfig}",
        # Only the fake nodes: the real node has a kubelet of its own.
        "--manage-all-nodes=false",
        f"--manage-nodes-with-label-selector={KWOK_NODE_SELECTOR}",
        # Without --server-address kwok binds 0.0.0.0:<node-port>; pin it to loopback.
        f"--server-address=127.0.0.1:{ports.kwok}",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        # Without a config file kwok v0.7 runs with lease duration 0: it keeps no node Leases
        # and (its stage choice is keyed the wrong way round) picks the heartbeat stage meant
        # for nodes that do, which updates node status only every ~10 min. With leases on,
        # it renews a Lease every 10 s and updates node status every 20-25 s, like a kubelet.
        "--node-lease-duration-seconds=40",
    ]


def health(component: str, ports: Ports) -> Health:
    """The endpoint that answers 200 once the component is ready."""
    if component == "etcd":
        return Health(f"http://127.0.0.1:{ports.etcd_client}/health")
    if component == "kube-apiserver":
        return Health(f"{ports.server}/readyz", authenticated=True)
    if component == "kube-controller-manager":
        return Health(f"https://127.0.0.1:{ports.controller_manager}/healthz")
    if component == "kube-scheduler":
        return Health(f"https://127.0.0.1:{ports.scheduler}/healthz")
    if component == "kwok":
        return Health(f"http://127.0.0.1:{ports.kwok}/healthz")
    raise KeyError(component)


def args(component: str, binary: Path, lay: Layout, ports: Ports) -> list[str]:
    builders = {
        "etcd": etcd_args,
        "kube-apiserver": apiserver_args,
        "kube-controller-manager": controller_manager_args,
        "kube-scheduler": scheduler_args,
        "kwok": kwok_args,
    }
    return builders[component](binary, lay, ports)
