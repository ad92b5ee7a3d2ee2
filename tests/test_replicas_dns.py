"""Inference replicas behind one DNS name: `--inference replicas.test:PORT`, where the client
host's /etc/hosts gives the name the addresses of three replicas on three namespace hosts.
gRPC's resolver hands every address to round_robin, so images spread over all three, and one
replica killed mid-run loses nothing and doubles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, lfw_people
from netns import Hosts, namespace_hosts
from store_fixtures import copy_photos
from test_replicas import TOKEN, embed_command, replica, store_counts

from facesets.client.channel import balanced_target, replica_count

REPLICAS = 3
PHOTOS = 96
NAME = "replicas.test"
# The replica is killed once it has spent this much CPU on the run: some of its images
# answered, more still in its hands (about 0.025 s each of LFW's 250-px photos on the mini
# pack, about 32 for each replica).
KILL_AFTER_CPU_S = 0.25

# How many replicas the client library counts (it opens streams for each), run on host 0.
COUNT = """
import sys
from facesets.client.channel import replica_count
print(*(replica_count(address) for address in sys.argv[1:]))
"""


def test_one_name_becomes_a_dns_target_and_literal_lists_stay_addresses() -> None:
    assert balanced_target("replicas.test:50051") == "dns:///replicas.test:50051"
    assert balanced_target("dns:///replicas.test:50051") == "dns:///replicas.test:50051"
    assert balanced_target(" dns:replicas.test:50051 ") == "dns:replicas.test:50051"
    assert balanced_target("10.0.0.5:50051") == "10.0.0.5:50051"
    assert balanced_target("[::1]:50051") == "[::1]:50051"
    assert balanced_target("10.0.0.5:1,10.0.0.6:2") == "ipv4:10.0.0.5:1,10.0.0.6:2"
    assert replica_count("10.0.0.5:1,10.0.0.6:2") == 2
    assert replica_count("dns:///10.0.0.5:1") == replica_count("10.0.0.5:1") == 1
    with pytest.raises(ValueError, match="one DNS name"):
        balanced_target("replicas.test:1,10.0.0.6:2")


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with namespace_hosts(REPLICAS + 1) as made:
        yield made


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_replicas_behind_one_dns_name_share_images_and_a_killed_one_loses_nothing(
    hosts: Hosts, lfw_dir: Path, tmp_path: Path
) -> None:
    copy_photos(lfw_people(lfw_dir, PHOTOS // 2, 2), tmp_path / "photos")
    src = tmp_path / "photos"
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    port = free_port()  # every replica on the same port, as behind one name
    started = [
        replica(hosts, i + 1, port, tmp_path, f"host{i + 1}").start(wait=False)
        for i in range(REPLICAS)
    ]
    names = {NAME: [hosts.address(i + 1) for i in range(REPLICAS)]}
    # gRPC's default resolver here (grpcio's c-ares) reads /etc/hosts itself, its "native"
    # one asks getaddrinfo: both return every line for the name. The calm run uses the default
    # and a bare name, the disturbed run the native resolver and an explicit dns:/// target.
    native = {**os.environ, "GRPC_DNS_RESOLVER": "native"}
    try:
        with hosts.resolving(0, names):
            for service in started:
                service.wait_serving()
            counted = subprocess.run(
                [*hosts.exec_prefix(0), sys.executable, "-c", COUNT, f"{NAME}:{port}",
                 f"dns:///{NAME}:{port}"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert counted.stdout.split() == ["3", "3"], counted.stderr

            calm = subprocess.run(
                embed_command(hosts, src, tmp_path / "calm.db", f"{NAME}:{port}", token),
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert calm.returncode == 0, calm.stderr
            calm_summary = json.loads(calm.stdout)
            assert calm_summary["embedded"] == PHOTOS
            calm_replicas = calm_summary["replicas"]
            assert set(calm_replicas) == {f"host{i + 1}" for i in range(REPLICAS)}
            assert all(r["images"] > 0 for r in calm_replicas.values()), calm_replicas
            assert sum(r["images"] for r in calm_replicas.values()) == PHOTOS

            # Disturbed: host 3's replica is killed once it is busy with this run's images.
            store = tmp_path / "disturbed.db"
            victim = started[-1].process
            assert victim is not None
            idle = cpu_seconds(victim.pid)
            run = subprocess.Popen(
                embed_command(hosts, src, store, f"dns:///{NAME}:{port}", token),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=native,
            )  # fmt: skip
            deadline = time.monotonic() + 300
            while cpu_seconds(victim.pid) - idle < KILL_AFTER_CPU_S:
                assert run.poll() is None, "the run ended before host 3's replica was busy"
                assert time.monotonic() < deadline, "host 3's replica never got work"
                time.sleep(0.02)
            started[-1].kill()
            stdout, stderr = run.communicate(timeout=600)
            assert run.returncode == 0, stderr
            summary = json.loads(stdout)
    finally:
        for service in started:
            service.stop()
    assert not (Path("/etc/netns") / hosts.names[0]).exists()
    # Nothing lost, nothing twice: the same store as the undisturbed run.
    assert store_counts(store) == store_counts(tmp_path / "calm.db")
    images, faces, said = store_counts(store)
    assert images == PHOTOS and faces == said
    assert summary["store"] == calm_summary["store"]
    answered = summary["replicas"]
    assert sum(r["images"] for r in answered.values()) == PHOTOS, answered
    # Host 3 was killed short of its share; the other two answered the rest.
    killed = answered.get("host3", {"images": 0})["images"]
    assert killed < calm_replicas["host3"]["images"], answered
    assert answered["host1"]["images"] + answered["host2"]["images"] == PHOTOS - killed
