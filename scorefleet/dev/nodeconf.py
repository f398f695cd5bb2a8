"""The real node's names, addresses and configuration files (pure: no I/O here).

Everything a real node leaves on the host is named after its cluster directory (a short hash of
its path), so a node's bridge, iptables chain, pod CIDR, cgroup root and state directories
never collide with another cluster's and teardown removes exactly its own:

    cluster dir /root/.cache/scorefleet/cluster-node   ->  hash 3f9a1c
    bridge sf3f9a1c, pod CIDR 10.<100..199>.0.0/16 (the gateway is the node IP),
    iptables chain SCOREFLEET-3f9a1c, cgroup root /scorefleet-3f9a1c,
    containerd's state, CNI IPAM state and pod logs under <cluster dir>/node/;
    containerd's sockets and the kubelet's root under /var/lib/scorefleet/3f9a1c/.

The sockets are not under the cluster dir because a unix socket path is short: containerd
refuses one over 104 bytes (Go over 107), and the kubelet binds its pod-resources socket under
its root. A cluster dir of any length therefore gives socket paths of fixed length (61 bytes
at most) instead of failing `up` with containerd's own error.

What cannot be made per cluster is kube-proxy: in iptables mode it owns fixed chain names
(KUBE-SERVICES, KUBE-POSTROUTING, ...) in the host's tables, so two kube-proxies would rewrite
each other's rules. One real node per machine therefore holds a machine-wide lock (node.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NODE_NAME = "scorefleet-node"
# What the kwok fake nodes carry (bootstrap.py) and what kwok is told to manage, so it leaves
# the real node alone.
KWOK_NODE_SELECTOR = "type=kwok"
# The real node's label and taint: only pods that tolerate it (and select it) land there.
REAL_NODE_LABEL = ("scorefleet.io/node", "real")
REAL_NODE_TAINT = "scorefleet.io/real-node"
CLUSTER_DOMAIN = "cluster.local"
# A /16 like kind's: the first local cluster ran out at ~250 Services with a /24.
SERVICE_CIDR = "10.96.0.0/16"
CNI_BIN_DIR = Path("/usr/lib/cni")
SHORT_ROOT = Path("/var/lib/scorefleet")
SOCKET_PATH_LIMIT = 104  # containerd's check; the kernel's sun_path holds 107 and a NUL


def cluster_hash(cluster_dir: Path) -> str:
    return hashlib.sha256(str(cluster_dir.resolve()).encode()).hexdigest()[:6]


@dataclass(frozen=True)
class NodeLayout:
    """Names, addresses and paths of one cluster's real node."""

    cluster_dir: Path

    @property
    def tag(self) -> str:
        return cluster_hash(self.cluster_dir)

    @property
    def root(self) -> Path:
        return self.cluster_dir / "node"

    @property
    def short_root(self) -> Path:
        """Where paths that become unix socket names live (see the module docstring)."""
        return SHORT_ROOT / self.tag

    # --- network -------------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"sf{self.tag}"  # 8 characters; Linux allows 15

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        # 10.100.0.0/16 .. 10.199.0.0/16: clear of kwok's 10.244/16 and the 10.96/16 Services.
        return ipaddress.IPv4Network(f"10.{100 + int(self.tag, 16) % 100}.0.0/16")

    @property
    def node_ip(self) -> str:
        """The bridge's gateway address: the kubelet rejects a loopback node IP and the kernel
        here has no `dummy` links, so the node is reachable (from pods too) on its bridge."""
        return str(self.pod_cidr.network_address + 1)

    @property
    def chain(self) -> str:
        return f"SCOREFLEET-{self.tag}"

    @property
    def cgroup_root(self) -> str:
        return f"/scorefleet-{self.tag}"

    # --- files ---------------------------------------------------------------------------
    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.short_root / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.short_root / "kubelet"

    @property
    def sockets(self) -> tuple[Path, ...]:
        """The unix sockets the node's processes bind (the longest of the kubelet's)."""
        return (self.containerd_socket, self.containerd_socket.with_name("containerd.sock.ttrpc"),
                self.kubelet_root / "pod-resources" / "kubelet.sock")

    @property
    def pod_logs(self) -> Path:
        return self.root / "pods"

    @property
    def resolv_conf(self) -> Path:
        """Empty: pods get the cluster DNS and nothing that could forward off the machine."""
        return self.root / "resolv.conf"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def models(self) -> Path:
        """What the model store serves (model_store_url() + "/<file>")."""
        return self.root / "models"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus"

    def config(self, name: str) -> Path:
        return self.root / name

    @property
    def dirs(self) -> tuple[Path, ...]:
        """Directories whose mounts teardown removes (overlay rootfs, shm, volumes)."""
        return (self.containerd_root, self.containerd_state, self.kubelet_root)


def containerd_config(lay: NodeLayout, sandbox_image: str) -> str:
    """containerd 1.6 (Debian's) as a plain process with its own root, state and socket.

    restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so runc could not lower
    oom_score_adj and every sandbox failed with "can't get final child's PID from pipe: EOF".
    Side effect: Guaranteed pods keep oom_score_adj 0 instead of -997.
    """
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f'root = "{lay.containerd_root}"',
        f'state = "{lay.containerd_state}"',
        "[grpc]",
        f'  address = "{lay.containerd_socket}"',
        "[ttrpc]",
        f'  address = "{lay.sockets[1]}"',
        "[metrics]",
        '  address = ""',
        f"[{cri}]",
        f'  sandbox_image = "{sandbox_image}"',
        "  restrict_oom_score_adj = true",
        "  disable_apparmor = true",
        "  enable_selinux = false",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        # The host's cgroups are v1 and not managed by systemd.
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{lay.cni_conf_dir}"',
        "  max_conf_num = 1",
        "",
    ])


def cni_conflist(lay: NodeLayout) -> str:
    """A bridge the tooling created (with the gateway address), host-local IPAM, no masquerade.

    ipMasq false: pod traffic never leaves the machine (the FORWARD rules drop it anyway), so
    there is nothing to translate. hairpinMode: a pod reaching itself through its Service.
    """
    cidr = lay.pod_cidr
    config: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": f"scorefleet-{lay.tag}",
        "plugins": [{
            "type": "bridge",
            "bridge": lay.bridge,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": str(cidr), "gateway": lay.node_ip}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(lay.cni_ipam_dir),
            },
        }],
    }
    return json.dumps(config, indent=2)


def kubelet_config(lay: NodeLayout, *, ca: Path, cert: Path, key: Path, port: int,
                   healthz_port: int) -> str:
    """KubeletConfiguration: webhook authn/authz through the API server, nothing anonymous.

    cgroupfs driver on the host's cgroup v1 (failCgroupV1 false: 1.35 refuses v1 by default).
    Image GC off: images are imported locally and there is no registry to pull them again.
    Eviction thresholds are minimal: the disk and memory are shared with other work.
    """
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": lay.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": lay.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{lay.containerd_socket}",
        "podLogsDir": str(lay.pod_logs),
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [lay.node_ip],
        "resolvConf": str(lay.resolv_conf),
        "registerWithTaints": [{"key": REAL_NODE_TAINT, "value": "true",
                                "effect": "NoSchedule"}],
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "maxPods": 110,
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "0s",
        "staticPodPath": "",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(lay: NodeLayout, *, kubeconfig: Path, healthz_port: int,
                      metrics_port: int) -> str:
    """iptables mode; NodePorts only on the node IP; conntrack sysctls left as they are."""
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": lay.node_ip,
        "clusterCIDR": str(lay.pod_cidr),
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{lay.node_ip}/32"],
        # 0 means "do not touch": nf_conntrack_max and the timeouts stay the host's.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        # No NodePorts on 127.0.0.1, so kube-proxy need not set route_localnet.
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }
    return yaml.safe_dump(config, sort_keys=False)


def corefile(lay: NodeLayout, *, kubeconfig: Path, health_port: int, ready_port: int) -> str:
    """CoreDNS answering the cluster domain from the API server, and nothing else.

    No `forward` plugin: a name outside the cluster's zones gets REFUSED, so no query ever
    leaves the machine.
    """
    return (
        f"{CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"    bind {lay.node_ip}\n"
        "    errors\n"
        f"    health 127.0.0.1:{health_port}\n"
        f"    ready 127.0.0.1:{ready_port}\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        "        pods insecure\n"
        "        ttl 5\n"
        "    }\n"
        "    cache 5\n"
        "}\n"
    )


def coredns_rbac() -> str:
    """What CoreDNS reads (kubeadm's system:coredns role), bound to its certificate's user."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
             "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["list", "watch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "system:coredns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:coredns"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "system:coredns"}],
    }
    return yaml.safe_dump_all([role, binding], sort_keys=False)


def namespace_annotations() -> dict[str, str]:
    """What puts a namespace's pods on the real node, with Kubernetes' own admission plugins.

    PodNodeSelector adds the node selector and PodTolerationRestriction the toleration to every
    pod created in an annotated namespace: a generic, documented mechanism a cluster admin
    uses the same way to give a team dedicated nodes. No workload (and no operator) needs to
    know about the local cluster.
    """
    key, value = REAL_NODE_LABEL
    toleration = [{"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{key}={value}",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(toleration),
    }


# The model store: a plain HTTP file server on the node, behind a Service, so a pipeline names
# its model the way it would in a cluster (an http(s) URI) and the example can be static.
MODEL_STORE_NAMESPACE = "scorefleet-system"
MODEL_STORE_SERVICE = "model-store"
MODEL_STORE_PORT = 8080


def model_store_url() -> str:
    return (f"http://{MODEL_STORE_SERVICE}.{MODEL_STORE_NAMESPACE}.svc.{CLUSTER_DOMAIN}:"
            f"{MODEL_STORE_PORT}")


def model_store_manifests(lay: NodeLayout) -> str:
    """A Service without a selector and the EndpointSlice that backs it with the node's file
    server: how a cluster fronts a backend that does not run as a pod."""
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": MODEL_STORE_NAMESPACE}}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": MODEL_STORE_SERVICE, "namespace": MODEL_STORE_NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": MODEL_STORE_PORT, "protocol": "TCP"}]},
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{MODEL_STORE_SERVICE}-node", "namespace": MODEL_STORE_NAMESPACE,
                     "labels": {"kubernetes.io/service-name": MODEL_STORE_SERVICE,
                                "endpointslice.kubernetes.io/managed-by": "scorefleet.dev"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [lay.node_ip], "conditions": {"ready": True},
                       "nodeName": NODE_NAME}],
        "ports": [{"name": "http", "port": MODEL_STORE_PORT, "protocol": "TCP"}],
    }
    return yaml.safe_dump_all([namespace, service, slice_], sort_keys=False)
