"""Pinned versions of every tool the local control plane is built from.

One place to bump. The Kubernetes patch level is the newest v1.34.x that the Go module proxy
serves as a whole module here (v1.34.4; later k8s.io/kubernetes tags answer 403 even though
the staging modules such as k8s.io/api go further), and the staging modules must carry the
matching v0.34.x or the wrapper would mix two Kubernetes releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

KUBERNETES_VERSION = "1.34.4"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.7.0"
HELM_VERSION = "3.19.5"
GATEWAY_API_VERSION = "1.4.1"
# The CoreDNS release Kubernetes 1.34 ships with (kubeadm's pinned version).
COREDNS_VERSION = "1.12.1"
# The real node's Prometheus: Debian's 2.42 is built without the Kubernetes service discovery.
# Prometheus 3.x modules are tagged v0.3xx.y (3.16.0 = v0.316.0) and have no replace
# directives, so they `go install`; its plugins/ files honour build tags, and
# PROMETHEUS_TAGS keep only the Kubernetes discovery (no cloud SDKs: a much shorter cold build).
PROMETHEUS_VERSION = "3.16.0"
PROMETHEUS_MODULE_VERSION = "0.316.0"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_TAGS = ("remove_all_sd", "enable_kubernetes_sd")

KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_SERVER_MODULE = "go.etcd.io/etcd/server/v3"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"


class Family(Enum):
    """How a tool is built: inside one of our generated wrapper modules, or `go install`ed.

    Kubernetes and etcd carry `replace` directives in their own go.mod, which
    `go install pkg@version` refuses; kwok, helm, CoreDNS and Prometheus 3 do not, so they
    install directly.
    """

    K8S = "k8s"
    ETCD = "etcd"
    INSTALL = "install"


@dataclass(frozen=True)
class Tool:
    name: str
    version: str  # without the leading "v"
    package: str  # the Go package path of its main package
    family: Family
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # Go build tags
    module_version: str = ""  # the Go module's tag, when it differs from the release's
    on_path: bool = True  # linked into paths.path_dir() (the PATH tests and `dev env` use)

    @property
    def go_version(self) -> str:
        """What `go install pkg@v...` asks the module proxy for."""
        return self.module_version or self.version

    @property
    def key(self) -> str:
        """Directory name in the binary cache: one directory per name, version (and tags)."""
        return f"{self.name}-v{self.version}" + "".join(f"+{t}" for t in self.tags)


def kubernetes_version_ldflags(version: str) -> tuple[str, ...]:
    """The `-X` flags upstream's hack/lib/version.sh sets.

    Without them `/version` answers v0.0.0-master and helm refuses charts declaring kubeVersion.
    buildDate is fixed so that two builds of one version are byte-identical.
    """
    major, minor, _ = version.split(".")
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


def helm_version_ldflags(version: str, kube_version: str) -> tuple[str, ...]:
    """As helm's Makefile: its own version, and the Kubernetes version it assumes offline."""
    major, minor, _ = kube_version.split(".")
    flags = [f"-X helm.sh/helm/v3/internal/version.version=v{version}"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return tuple(flags)


KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    # The real node: built from the same module so node and control plane are one release.
    "kubelet",
    "kube-proxy",
)

TOOLS: tuple[Tool, ...] = (
    *(
        Tool(
            name=cmd,
            version=KUBERNETES_VERSION,
            package=f"{KUBERNETES_MODULE}/cmd/{cmd}",
            family=Family.K8S,
            ldflags=kubernetes_version_ldflags(KUBERNETES_VERSION),
        )
        for cmd in KUBERNETES_COMMANDS
    ),
    Tool(name="etcd", version=ETCD_VERSION, package=ETCD_SERVER_MODULE, family=Family.ETCD),
    Tool(
        name="kwok",
        version=KWOK_VERSION,
        package="sigs.k8s.io/kwok/cmd/kwok",
        family=Family.INSTALL,
    ),
    Tool(
        name="helm",
        version=HELM_VERSION,
        package="helm.sh/helm/v3/cmd/helm",
        family=Family.INSTALL,
        ldflags=helm_version_ldflags(HELM_VERSION, KUBERNETES_VERSION),
    ),
    # Cluster DNS for the real node; its go.mod has no replace directives, so it installs.
    Tool(
        name="coredns",
        version=COREDNS_VERSION,
        package="github.com/coredns/coredns",
        family=Family.INSTALL,
        ldflags=(f"-X github.com/coredns/coredns/coremain.GitCommit=v{COREDNS_VERSION}",),
    ),
    Tool(
        name="prometheus",
        version=PROMETHEUS_VERSION,
        package=f"{PROMETHEUS_MODULE}/cmd/prometheus",
        family=Family.INSTALL,
        ldflags=(f"-X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION}",),
        tags=PROMETHEUS_TAGS,
        module_version=PROMETHEUS_MODULE_VERSION,
        # Only the real node starts it (by its path): `prometheus` on PATH stays Debian's,
        # which the tests that scrape scorer processes directly start.
        on_path=False,
    ),
)


def tool(name: str) -> Tool:
    for t in TOOLS:
        if t.name == name:
            return t
    raise KeyError(name)
