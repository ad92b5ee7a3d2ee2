"""Inference replicas: the same photos embedded through 1, 2 and 4 one-worker replicas.

Each replica is `facesets serve inference --workers 1` on its own loopback port; the client is
the client library's InferenceClient over all of them (`HOST:PORT,HOST:PORT,...`, balanced by
gRPC's round_robin), sending image bytes as a remote client does. Replicas are started and
warmed (one image each) before the clock starts; the time runs from the first image sent to
the last result. Ratios are images per second against one replica, measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

MODEL_PACK = "facepack-mini"
COUNTS = (1, 2, 4)


def _photos(lfw: Path, count: int) -> list[Path]:
    found: list[Path] = []
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        found.extend(sorted(person.glob("*.jpg"))[:2])
        if len(found) >= count:
            break
    return found[:count]


def _start_replicas(count: int, folder: Path, model_root: Path) -> list:
    from facesets.orchestrator import local

    started = []
    for i in range(count):
        ready = folder / f"replica{i}.ready"
        command = local.serve_command(
            "inference",
            "127.0.0.1:0",
            ready,
            [
                "--workers", "1", "--providers", "cpu", "--model-root", str(model_root),
                "--model-pack", MODEL_PACK, "--replica-name", f"replica{i}",
            ],
        )  # fmt: skip
        process = local.launch(command, folder / f"replica{i}.log")
        started.append((process, ready, folder / f"replica{i}.log"))
    addresses = []
    for process, ready, log in started:
        addresses.append(local.wait_ready(process, ready, "inference", log))
    return [(process, address) for (process, _, _), address in zip(started, addresses, strict=True)]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def embed_through(count: int, images: list, model_root: Path, repeats: int) -> dict:
    from facesets.client import Endpoint, ImageInput, InferenceClient
    from facesets.orchestrator import local

    with tempfile.TemporaryDirectory() as tmp:
        replicas = _start_replicas(count, Path(tmp), model_root)
        try:
            client = InferenceClient(Endpoint(",".join(a for _, a in replicas)))
            client.wait_ready()
            # Warm each replica (its first image pays for lazy set-up).
            list(client.embed([ImageInput(id=f"w{i}", data=images[0][1]) for i in range(count)]))
            times: list[float] = []
            answered: Counter = Counter()
            cpu_before = sum(_cpu_seconds(process.pid) for process, _ in replicas)
            client_before = time.process_time()
            for _ in range(repeats):
                started = time.perf_counter()
                for result in client.embed([ImageInput(id=n, data=d) for n, d in images]):
                    answered[result.replica] += 1
                times.append(time.perf_counter() - started)
            replica_cpu = sum(_cpu_seconds(process.pid) for process, _ in replicas) - cpu_before
            client_cpu = time.process_time() - client_before
            client.close()
        finally:
            for process, _ in replicas:
                local.terminate(process)
    seconds = statistics.median(times)
    return {
        "replicas": count,
        "images": len(images),
        "seconds_median": round(seconds, 2),
        "seconds_range": [round(min(times), 2), round(max(times), 2)],
        "images_per_s": round(len(images) / seconds, 2),
        "answered_by_replica": dict(sorted(answered.items())),
        # CPU per image, and cores kept busy: flat CPU per image with more replicas means the
        # replicas add no work of their own; few cores busy means the machine was shared.
        "replica_cpu_ms_per_image": round(1000 * replica_cpu / (repeats * len(images)), 1),
        "client_cpu_ms_per_image": round(1000 * client_cpu / (repeats * len(images)), 1),
        "cores_busy": round((replica_cpu + client_cpu) / sum(times), 2),
    }


def main(shared: Path, quick: bool) -> dict:
    from facesets.common.settings import usable_cores

    photos = _photos(shared / "data" / "lfw", 40 if quick else 300)
    images = [(p.name, p.read_bytes()) for p in photos]
    repeats = 1 if quick else 3
    rows = []
    for count in COUNTS:
        row = embed_through(count, images, shared.resolve(), repeats)
        rows.append(row)
        print(
            f"{count} replica(s): {row['images_per_s']:.2f} images/s "
            f"(median of {repeats}, {row['seconds_range'][0]}-{row['seconds_range'][1]} s); "
            f"by replica {row['answered_by_replica']}; CPU per image: replicas "
            f"{row['replica_cpu_ms_per_image']} ms, client {row['client_cpu_ms_per_image']} ms; "
            f"cores busy {row['cores_busy']}",
            flush=True,
        )
    base = rows[0]["images_per_s"]
    ratios = {f"{row['replicas']}_vs_1": round(row["images_per_s"] / base, 2) for row in rows[1:]}
    print(f"throughput against one replica: {ratios} (target: 2 replicas >= 1.7x)")
    print(f"usable cores here: {usable_cores()}")
    return {"rows": rows, "ratios": ratios, "cores": usable_cores(), "target_2_vs_1": 1.7}
