"""Where Kafka and Redis listen for the real node's pods, and the example stream pipeline.

Pure or local checks (no cluster): the broker's listeners with and without the node address,
the refusal of any address that is not a local bridge's (never an interface other machines
reach), and the example pipeline rendered into a spec the API accepts. That pods really reach
them is tests/cluster/test_stream_real_pods.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from scorefleet import stream_example
from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.dev import node_address
from scorefleet.dev.kafka import server_properties


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_broker_listens_on_loopback_only_unless_given_the_node_address() -> None:
    plain = props(server_properties(9092, 9093, Path("/data"), 6))
    assert plain["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert plain["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert "NODE" not in plain["listener.security.protocol.map"]

    node = props(server_properties(9092, 9093, Path("/data"), 6, "10.165.0.1:40001"))
    assert node["listeners"] == ("PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,"
                                 "NODE://10.165.0.1:40001")
    # Each listener advertises itself: a pod bootstrapping from the node IP stays on it.
    assert node["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:9092,"
                                            "NODE://10.165.0.1:40001")
    assert node["listener.security.protocol.map"].endswith(",NODE:PLAINTEXT")
    # The controller and the broker's own traffic stay on loopback.
    assert node["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert node["inter.broker.listener.name"] == "PLAINTEXT"


@pytest.mark.parametrize("ip, why", [
    ("127.0.0.1", "not a private non-loopback"),
    ("8.8.8.8", "not a private non-loopback"),
    ("10.254.254.254", "not an address of this host"),
    ("kafka.local", "not an IPv4 address"),
])
def test_an_address_that_is_not_a_local_bridge_is_refused(ip: str, why: str) -> None:
    with pytest.raises(node_address.NodeAddressError, match=why):
        node_address.check(ip)


def non_bridge_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        words = line.split()
        ip = words[3].split("/")[0]
        if words[1] != "lo" and not (Path("/sys/class/net") / words[1] / "bridge").is_dir():
            found.append(ip)
    return found


def test_the_address_of_an_ordinary_interface_is_refused() -> None:
    """eth0's address is local, and may be private: it is still not where pods are."""
    addresses = non_bridge_addresses()
    if not addresses:
        pytest.skip("this machine has no IPv4 interface besides lo and bridges")
    for ip in addresses:
        with pytest.raises(node_address.NodeAddressError,
                           match=r"not a bridge|not a private non-loopback"):
            node_address.check(ip)


def test_the_example_stream_pipeline_renders_into_a_valid_spec() -> None:
    text = stream_example.render(stream_example.EXAMPLE.read_text(), "10.165.0.1:40001",
                                 "10.165.0.1:40002")
    pipeline = ScoringPipeline.model_validate(yaml.safe_load(text))
    assert pipeline.spec.source is not None and pipeline.spec.features is not None
    assert pipeline.spec.source.kafka.bootstrap_servers == ["10.165.0.1:40001"]
    assert pipeline.spec.features.redis.address == "10.165.0.1:40002"
    ex = stream_example.load()
    # 24 features in the event and 8 from Redis: the example model's 32.
    assert (ex.inline, len(ex.online)) == (24, 8)
    assert ex.key("s7") == "sender:s7"
    with pytest.raises(KeyError):  # a placeholder nobody filled is an error here
        stream_example.render("bootstrapServers: [${KAFKA_BOOTSTRAP}] ${OTHER}", "a:1", "b:2")


def test_produce_refuses_unbounded_runs() -> None:
    ex = stream_example.load()
    for count, rate in ((0, 10.0), (stream_example.MAX_EVENTS + 1, 10.0), (10, 0.0),
                        (10, stream_example.MAX_RATE + 1)):
        with pytest.raises(ValueError, match="count 1-"):
            stream_example.produce("127.0.0.1:1", ex, count, rate)
