"""Job parameters through real services: a value set to zero reaches its job as zero, an unset
one takes its default, and one outside the job's range is refused with INVALID_ARGUMENT naming
the field, before anything is written."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import free_port
from store_fixtures import add_photos, copy_photos, lfw_slice, new_store

from facesets.client import ClusteringClient, Endpoint, ExportClient
from facesets.contract import defaults, layout
from facesets.orchestrator.stages import follow
from facesets.v1 import clustering_pb2, common_pb2, export_pb2
from services import ServiceProcess, run_facesets

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
PER_PERSON = 4


@dataclass
class World:
    root: Path
    store: str
    raw: Path
    refined: Path
    clustering: ServiceProcess
    inference: ServiceProcess
    export: ServiceProcess
    client: ClusteringClient

    def job(self, rpc: str, request: Any) -> dict[str, Any]:
        # The raw stub: these tests send request fields exactly as given, zeros included.
        return follow(getattr(self.client.stub, rpc)(request), show_progress=False)

    def fresh(self, name: str) -> Path:
        """A folder no test has used yet."""
        folder = self.root / name
        assert not folder.exists()
        return folder


@pytest.fixture(scope="module")
def world(
    lfw_dir: Path, model_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("params")
    photos = copy_photos(lfw_slice(lfw_dir, PEOPLE, PER_PERSON), root / "photos")
    store = new_store(root / "faces.db")
    add_photos(store, [p for person in photos.values() for p in person], model_root)
    store.close()
    clustering = ServiceProcess("clustering", free_port(), root / "clustering.log").start()
    inference = ServiceProcess("inference", free_port(), root / "inference.log").start()
    export = ServiceProcess(
        "export", free_port(), root / "export.log",
        "--clustering", clustering.address, "--inference", inference.address,
    ).start()  # fmt: skip
    client = ClusteringClient(Endpoint(clustering.address))
    world = World(
        root, str(root / "faces.db"), root / "raw", root / "refined", clustering, inference,
        export, client,
    )  # fmt: skip
    world.job("Cluster", clustering_pb2.ClusterRequest(store=world.store, out=str(world.raw)))
    refined = world.job(
        "Refine",
        clustering_pb2.RefineRequest(store=world.store, out=str(world.refined), min_faces=2),
    )
    assert refined["facesets"] == len(PEOPLE)
    try:
        yield world
    finally:
        client.close()
        for service in (export, inference, clustering):
            service.stop()


def manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# --- zero reaches the job ---------------------------------------------------------------------
ZERO_GATE = common_pb2.QualityGate(min_short=0, min_blur=0, min_det_score=0)


def test_refine_gates_set_to_zero_reach_the_job_as_zero(world: World) -> None:
    out = world.fresh("refine_zero")
    world.job(
        "Refine",
        clustering_pb2.RefineRequest(store=world.store, out=str(out), min_faces=1, gate=ZERO_GATE),
    )
    parameters = manifest(out / layout.REFINE_MANIFEST)["parameters"]
    assert (parameters["min_short"], parameters["min_blur"], parameters["min_det_score"]) == (
        0.0,
        0.0,
        0.0,
    )
    assert parameters["min_faces"] == 1
    # Fields left unset take the defaults from settings.
    assert parameters["merge_threshold"] == pytest.approx(defaults.REFINE_MERGE_THRESHOLD)


def test_refine_min_blur_zero_through_the_cli_reaches_the_job(world: World) -> None:
    out = world.fresh("refine_cli_zero")
    done = run_facesets(
        "refine", world.store, str(out), "--min-blur", "0", "--min-short", "0",
        "--min-faces", "2", "--outlier-min-cluster", "4", "--lookalike-margin", "0.07",
        "--clustering", world.clustering.address, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parameters = manifest(out / layout.REFINE_MANIFEST)["parameters"]
    assert parameters["min_blur"] == 0.0 and parameters["min_short"] == 0.0
    # Two flags the request did not carry (the job took its defaults whatever was given).
    assert parameters["outlier_min_cluster"] == 4
    assert parameters["lookalike_margin"] == pytest.approx(0.07)
    assert parameters["min_det_score"] == pytest.approx(defaults.QUALITY_MIN_DET_SCORE)


def test_route_gates_set_to_zero_reach_the_job_as_zero(world: World) -> None:
    out = world.fresh("route_zero")
    summary = world.job(
        "Route",
        clustering_pb2.RouteRequest(
            store=world.store,
            facesets_dir=str(out),
            min_faces=2,
            gate=ZERO_GATE,
        ),
    )
    assert summary["faces_below_quality_gate"] == 0  # nothing fails a gate of zero
    parameters = manifest(out / layout.REFINE_MANIFEST)["parameters"]
    assert (parameters["min_short"], parameters["min_blur"], parameters["min_det_score"]) == (
        0.0,
        0.0,
        0.0,
    )
    route = manifest(out / layout.REFINE_MANIFEST)["routes"][-1]
    assert route["match_threshold"] == pytest.approx(defaults.IMMICH_MATCH_THRESHOLD)


def test_consolidate_candidate_similarity_zero_reaches_the_job(world: World) -> None:
    out = world.fresh("consolidate_zero")
    world.job("Refine", clustering_pb2.RefineRequest(store=world.store, out=str(out), min_faces=2))
    summary = world.job(
        "Consolidate",
        clustering_pb2.ConsolidateRequest(
            facesets_dir=str(out),
            store=world.store,
            candidate_similarity=0,
            confident_similarity=0.999,  # nothing merges: the folder keeps its facesets
        ),
    )
    assert summary["merges"] == []
    assert all(c["similarity"] >= 0 for c in summary["candidates"])
    rounds = manifest(out / layout.CONSOLIDATE_MANIFEST)["rounds"]
    assert rounds[-1]["parameters"]["candidate_similarity"] == 0.0
    assert rounds[-1]["parameters"]["confident_similarity"] == pytest.approx(0.999)


# Cosine-distance thresholds have no zero: (0, 2] excludes it. An explicit zero is refused,
# naming the field, where it used to turn silently into the default; unset takes the default.
@pytest.mark.parametrize(
    ("rpc", "make", "field", "recorded"),
    [
        (
            "Cluster",
            lambda w, out: clustering_pb2.ClusterRequest(store=w.store, out=str(out), threshold=0),
            "threshold",
            lambda out: manifest(out / layout.CLUSTER_MANIFEST)["parameters"]["threshold"],
        ),
        (
            "Extend",
            lambda w, out: clustering_pb2.ExtendRequest(
                store=w.store, raw_out=str(w.raw), threshold=0
            ),
            "threshold",
            None,
        ),
        (
            "Dedup",
            lambda w, out: clustering_pb2.DedupRequest(store=w.store, near_threshold=0),
            "near_threshold",
            None,
        ),
    ],
    ids=["cluster", "extend", "dedup"],
)
def test_a_zero_distance_is_refused_not_replaced_by_the_default(
    world: World,
    rpc: str,
    make: Callable[[World, Path], Any],
    field: str,
    recorded: Callable[[Path], float] | None,
) -> None:
    out = world.fresh(f"{rpc.lower()}_zero")
    with pytest.raises(grpc.RpcError) as refused:
        world.job(rpc, make(world, out))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in refused.value.details() and "(0, 2" in refused.value.details()
    assert not out.exists()
    if recorded is not None:
        request = make(world, out)
        request.ClearField(field)
        world.job(rpc, request)
        assert recorded(out) == pytest.approx(defaults.CLUSTER_THRESHOLD)


def test_dedup_near_threshold_set_reaches_the_job(world: World) -> None:
    world.job("Dedup", clustering_pb2.DedupRequest(store=world.store, near_threshold=0.01))
    report = manifest(layout.duplicates_path(Path(world.store)))
    assert report["parameters"]["near_threshold"] == pytest.approx(0.01)


def test_every_dedup_flag_through_the_cli_reaches_the_job(world: World) -> None:
    """The request carried near_threshold alone: the other four flags changed nothing."""
    flags = {
        "near_threshold": ("--near-threshold", 0.05),
        "face_similarity": ("--face-similarity", 0.5),
        "candidate_distance": ("--candidate-distance", 0.25),
        "min_overlap": ("--min-overlap", 0.5),
        "min_inliers": ("--min-inliers", 7),
    }
    given = [str(v) for flag, value in flags.values() for v in (flag, value)]
    done = run_facesets(
        "dedup", world.store, *given, "--clustering", world.clustering.address, "--json"
    )
    assert done.returncode == 0, done.stderr
    parameters = manifest(layout.duplicates_path(Path(world.store)))["parameters"]
    assert parameters == {name: pytest.approx(value) for name, (_, value) in flags.items()}


def test_export_pad_ratio_and_min_face_short_zero_reach_the_job(world: World) -> None:
    out = world.fresh("export_zero")
    done = run_facesets(
        "export-swap", world.store, str(world.refined / layout.REFINE_MANIFEST), str(out),
        "--pad-ratio", "0", "--min-face-short", "0", "--top-n", "2",
        "--export", world.export.address, "--clustering", world.clustering.address,
        "--inference", world.inference.address, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["facesets"] == len(PEOPLE)
    params = manifest(out / layout.FACESET_DIR.format(1) / layout.FACESET_MANIFEST)["params"]
    assert params["pad_ratio"] == 0.0 and params["min_face_short"] == 0.0
    assert params["top_n"] == 2 and params["out_size"] == defaults.EXPORT_OUT_SIZE


# --- out of range is refused ------------------------------------------------------------------
NAN, INF = math.nan, math.inf
BAD = [
    ("Cluster", clustering_pb2.ClusterRequest, {"threshold": NAN}, "threshold"),
    ("Cluster", clustering_pb2.ClusterRequest, {"threshold": 2.5}, "threshold"),
    (
        "Refine",
        clustering_pb2.RefineRequest,
        {"gate": common_pb2.QualityGate(min_blur=-1)},
        "min_blur",
    ),
    ("Refine", clustering_pb2.RefineRequest, {"min_faces": 0}, "min_faces"),
    ("Refine", clustering_pb2.RefineRequest, {"merge_threshold": INF}, "merge_threshold"),
    ("Extend", clustering_pb2.ExtendRequest, {"threshold": -0.1}, "threshold"),
    ("Dedup", clustering_pb2.DedupRequest, {"near_threshold": 2.0}, "near_threshold"),
    (
        "Consolidate",
        clustering_pb2.ConsolidateRequest,
        {"candidate_similarity": 1.5},
        "candidate_similarity",
    ),
    (
        "Consolidate",
        clustering_pb2.ConsolidateRequest,
        {"candidate_similarity": 0.9, "confident_similarity": 0.5},
        "candidate_similarity",
    ),
    (
        "Consolidate",
        clustering_pb2.ConsolidateRequest,
        {"confident_similarity": 1.0},
        "confident_similarity",
    ),
    ("Route", clustering_pb2.RouteRequest, {"match_threshold": 3.0}, "match_threshold"),
    (
        "Route",
        clustering_pb2.RouteRequest,
        {"gate": common_pb2.QualityGate(min_det_score=1.5)},
        "min_det_score",
    ),
    ("ExportSwap", export_pb2.ExportSwapRequest, {"pad_ratio": -0.5}, "pad_ratio"),
    ("ExportSwap", export_pb2.ExportSwapRequest, {"out_size": 8}, "out_size"),
    ("ExportSwap", export_pb2.ExportSwapRequest, {"top_n": 0}, "top_n"),
    ("ExportSwap", export_pb2.ExportSwapRequest, {"min_face_short": NAN}, "min_face_short"),
]


@pytest.mark.parametrize(
    ("rpc", "message", "fields", "named"),
    BAD,
    ids=[f"{rpc}-{'-'.join(fields)}-{list(fields.values())[0]}" for rpc, _, fields, _ in BAD],
)
def test_an_out_of_range_parameter_is_refused_naming_the_field(
    world: World, rpc: str, message: Any, fields: dict[str, float], named: str
) -> None:
    out = world.root / f"refused_{rpc}"
    paths = {
        "Cluster": {"out": str(out)},
        "Refine": {"out": str(out)},
        "Extend": {"raw_out": str(world.raw)},
        "Dedup": {},
        "Consolidate": {"facesets_dir": str(world.refined)},
        "Route": {"facesets_dir": str(out)},
    }
    if rpc == "ExportSwap":
        request = message(
            store=world.store,
            refine_manifest=str(world.refined / layout.REFINE_MANIFEST),
            out=str(out),
            **fields,
        )
        client = ExportClient(Endpoint(world.export.address))
        try:
            with pytest.raises(grpc.RpcError) as refused:
                follow(client.stub.ExportSwap(request), show_progress=False)
        finally:
            client.close()
    else:
        request = message(store=world.store, **paths[rpc], **fields)
        with pytest.raises(grpc.RpcError) as refused:
            world.job(rpc, request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details()
    assert details.startswith(f"{named} must be"), details
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [("cluster", "--threshold", "nan"), ("refine", "--min-short", "-5")],
)
def test_the_cli_refuses_an_out_of_range_flag_naming_it(
    world: World, command: str, flag: str, value: str
) -> None:
    out = world.root / f"cli_refused_{command}"
    done = run_facesets(command, world.store, str(out), flag, value)
    assert done.returncode == 1
    assert f"{flag[2:].replace('-', '_')} must be" in done.stderr, done.stderr
    assert not out.exists()
