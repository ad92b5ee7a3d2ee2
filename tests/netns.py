"""Separate hosts on one machine: network namespaces joined by veth pairs (iproute2, as root).

Host 0 is the client host; hosts 1..n each get a veth pair to it on their own /24:
10.77.i.1 on host i, 10.77.i.2 on host 0. Only these namespaces and addresses are touched, and
every name carries a per-run suffix so that parallel runs do not meet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NETNS_ETC = Path("/etc/netns")  # per-namespace files `ip netns exec` mounts over /etc


def netns_missing() -> str | None:
    """Why namespace hosts cannot be built here, or None."""
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (`ip netns add`)"
    probe = f"fsprobe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Hosts:
    names: list[str] = field(default_factory=list)  # namespace of host i

    def exec_prefix(self, host: int) -> list[str]:
        return ["ip", "netns", "exec", self.names[host]]

    @staticmethod
    def address(host: int) -> str:
        """Host i's address (i >= 1), reachable from host 0."""
        return f"10.77.{host}.1"

    @contextmanager
    def resolving(self, host: int, names: dict[str, list[str]]) -> Iterator[None]:
        """Host i resolves each name to its addresses (several lines for one name in its own
        /etc/hosts: `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts for what it
        runs); the file and its folder are removed at the end."""
        folder = NETNS_ETC / self.names[host]
        made_etc = not NETNS_ETC.exists()
        folder.mkdir(parents=True)
        try:
            lines = ["127.0.0.1 localhost", "::1 localhost"]
            lines += [f"{address} {name}" for name, found in names.items() for address in found]
            (folder / "hosts").write_text("\n".join(lines) + "\n")
            yield
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if made_etc:
                with suppress(OSError):
                    NETNS_ETC.rmdir()  # only when no other run's folder is left in it

    def set_link(self, host: int, up: bool) -> None:
        """Cut or restore host i's cable to host 0."""
        _ip("-n", self.names[host], "link", "set", f"eth{host}", "up" if up else "down")


@contextmanager
def namespace_hosts(count: int) -> Iterator[Hosts]:
    """Host 0 (the client) and hosts 1..count-1, each wired to host 0; all removed at the end,
    whatever happened."""
    reason = netns_missing()
    if reason:
        pytest.skip(reason)
    run = uuid.uuid4().hex[:6]
    hosts = Hosts()
    try:
        for i in range(count):
            name = f"fs-{run}-h{i}"
            _ip("netns", "add", name)
            hosts.names.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        for i in range(1, count):
            near, far = f"fv{run}{i}a", f"fv{run}{i}b"
            _ip("link", "add", near, "type", "veth", "peer", "name", far)
            _ip("link", "set", near, "netns", hosts.names[i])
            _ip("link", "set", far, "netns", hosts.names[0])
            _ip("-n", hosts.names[i], "link", "set", near, "name", f"eth{i}")
            _ip("-n", hosts.names[0], "link", "set", far, "name", f"eth{i}")
            _ip("-n", hosts.names[i], "addr", "add", f"10.77.{i}.1/24", "dev", f"eth{i}")
            _ip("-n", hosts.names[0], "addr", "add", f"10.77.{i}.2/24", "dev", f"eth{i}")
            _ip("-n", hosts.names[i], "link", "set", f"eth{i}", "up")
            _ip("-n", hosts.names[0], "link", "set", f"eth{i}", "up")
        yield hosts
    finally:
        for i in range(1, count):  # a pair that never reached its namespaces
            subprocess.run(["ip", "link", "del", f"fv{run}{i}a"], capture_output=True, timeout=30)
        for name in hosts.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
