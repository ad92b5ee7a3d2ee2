"""The clustering service's jobs: one typed parameters object and one typed request each.

A params object holds a job's tunable values with their defaults (contract/defaults.py) and
declared ranges: it refuses a value outside its range when built, on the caller's side and in
the service alike. A request adds the paths a job works on and becomes the job's proto message
(`to_proto`), its parameters by field name; `call` runs it on a Clustering stub.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facesets.contract import defaults
from facesets.contract.fields import (
    COSINE_DISTANCE,
    COSINE_SIMILARITY,
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE_COUNT,
    InvalidParameter,
    LinkMode,
    Params,
    Range,
    bounded,
    described,
)
from facesets.contract.quality import QualityGate
from facesets.contract.requests import JobRequest, absolute
from facesets.v1 import clustering_pb2, clustering_pb2_grpc, common_pb2


@dataclass(frozen=True)
class ClusterParams(Params):
    threshold: float = bounded(
        defaults.CLUSTER_THRESHOLD,
        COSINE_DISTANCE,
        "cosine distance cut of average linkage",
    )
    link_mode: LinkMode = LinkMode.AUTO
    dense_max: int = bounded(
        defaults.DENSE_COMPONENT_MAX,
        POSITIVE_COUNT,
        "largest component clustered with a dense matrix",
    )
    cannot_link: bool = defaults.CANNOT_LINK  # faces of one photo never share a cluster


@dataclass(frozen=True)
class RefineParams(Params):
    initial_threshold: float = bounded(
        defaults.CLUSTER_THRESHOLD,
        COSINE_DISTANCE,
        "cosine distance of the first clustering",
    )
    merge_threshold: float = bounded(
        defaults.REFINE_MERGE_THRESHOLD,
        COSINE_DISTANCE,
        "centroid distance that merges clusters",
    )
    outlier_threshold: float = bounded(
        defaults.REFINE_OUTLIER_THRESHOLD,
        COSINE_DISTANCE,
        "distance to its cluster's centroid that rejects a face",
    )
    min_faces: int = bounded(
        defaults.REFINE_MIN_FACES,
        POSITIVE_COUNT,
        "unique photos a faceset needs",
    )
    gate: QualityGate = field(default_factory=QualityGate)
    outlier_min_cluster: int = bounded(
        defaults.REFINE_OUTLIER_MIN_CLUSTER,
        COUNT,
        "clusters smaller than this keep their outliers",
    )
    link_mode: LinkMode = LinkMode.AUTO
    cannot_link: bool = defaults.CANNOT_LINK
    lookalike_margin: float = bounded(
        defaults.LOOKALIKE_MARGIN,
        NON_NEGATIVE,
        "facesets within the merge threshold plus this, kept apart by a shared photo, are "
        "listed as look-alikes",
    )


@dataclass(frozen=True)
class ExtendParams(Params):
    threshold: float = bounded(
        defaults.EXTEND_THRESHOLD,
        COSINE_DISTANCE,
        "largest distance to a known centroid",
    )
    # None keeps the mode each output was made with; so does the request's AUTO, its zero.
    link_mode: LinkMode | None = None
    cannot_link: bool = defaults.CANNOT_LINK


@dataclass(frozen=True)
class DedupParams(Params):
    near_threshold: float = bounded(
        defaults.NEAR_DUPLICATE_THRESHOLD,
        Range(0.0, 2.0, low_open=True, high_open=True, what="a cosine distance"),
    )
    face_similarity: float = bounded(
        defaults.NEAR_DUPLICATE_FACE_SIMILARITY,
        COSINE_SIMILARITY,
        "a face two candidate photos share matches at least this well",
    )
    candidate_distance: float = bounded(
        defaults.NEAR_DUPLICATE_CANDIDATE_DISTANCE,
        COSINE_DISTANCE,
        "DCT-hash distance of faceless candidate pairs",
    )
    min_overlap: float = bounded(
        defaults.NEAR_DUPLICATE_MIN_OVERLAP,
        FRACTION,
        "share of the larger photo the aligned other one covers",
    )
    # A similarity transform needs two point matches.
    min_inliers: int = bounded(
        defaults.NEAR_DUPLICATE_MIN_INLIERS,
        Range(2, integer=True),
        "ORB matches agreeing on one transform",
    )


@dataclass(frozen=True)
class ConsolidateParams(Params):
    candidate_similarity: float = bounded(
        defaults.CONSOLIDATE_CANDIDATE_SIM,
        COSINE_SIMILARITY,
        "centroid similarity reported as a candidate",
    )
    # Complete linkage needs a similarity below 1 to cut at.
    confident_similarity: float = bounded(
        defaults.CONSOLIDATE_CONFIDENT_SIM,
        Range(-1.0, 1.0, high_open=True, what="a cosine similarity"),
    )
    undo: bool = described(False, "restore the facesets merged before")
    dry_run: bool = described(False, "report what would change without changing anything")
    link_mode: LinkMode | None = None  # None keeps the refine output's mode

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.candidate_similarity > self.confident_similarity:
            raise InvalidParameter(
                "candidate_similarity",
                self.candidate_similarity,
                f"at most confident_similarity ({self.confident_similarity:g})",
            )


@dataclass(frozen=True)
class RouteParams(Params):
    match_threshold: float = bounded(
        defaults.IMMICH_MATCH_THRESHOLD,
        COSINE_DISTANCE,
        "largest distance to an identity's centroid that routes a face to it",
    )
    cluster_threshold: float = bounded(
        defaults.CLUSTER_THRESHOLD,
        COSINE_DISTANCE,
        "average-linkage cut of the faces no identity takes",
    )
    min_faces: int = bounded(
        defaults.REFINE_MIN_FACES,
        POSITIVE_COUNT,
        "unique photos a faceset needs",
    )
    gate: QualityGate = field(default_factory=QualityGate)
    outlier_threshold: float = bounded(
        defaults.REFINE_OUTLIER_THRESHOLD,
        COSINE_DISTANCE,
        "distance to its cluster's centroid that rejects a face",
    )
    outlier_min_cluster: int = bounded(
        defaults.REFINE_OUTLIER_MIN_CLUSTER,
        COUNT,
        "clusters smaller than this keep their outliers",
    )
    link_mode: LinkMode = LinkMode.AUTO
    cannot_link: bool = defaults.CANNOT_LINK


@dataclass(frozen=True)
class AgeProbeParams(Params):
    sub_threshold: float = bounded(
        defaults.AGE_SUB_THRESHOLD,
        COSINE_DISTANCE,
        "average-linkage cut of the sub-clusters (candidate eras)",
    )
    anchor_min_faces: int = bounded(
        defaults.AGE_ANCHOR_MIN_FACES,
        POSITIVE_COUNT,
        "sub-clusters this large are anchors; smaller eras are thin",
    )
    era_years: int = bounded(
        defaults.AGE_ERA_YEARS,
        COUNT,
        "a fragment's dominant year within this many years of its anchor's",
    )


@dataclass(frozen=True)
class AgeSplitParams(Params):
    recover_threshold: float = bounded(
        defaults.AGE_RECOVER_THRESHOLD,
        COSINE_DISTANCE,
        "wide recovery: largest distance to the seed centroid",
    )
    tighten_threshold: float = bounded(
        defaults.AGE_TIGHTEN_THRESHOLD,
        COSINE_DISTANCE,
        "after one re-centroid: largest distance kept",
    )
    sub_threshold: float = bounded(
        defaults.AGE_SUB_THRESHOLD,
        COSINE_DISTANCE,
        "average-linkage cut of the sub-clusters (candidate eras)",
    )
    join_threshold: float = bounded(
        defaults.AGE_JOIN_THRESHOLD,
        COSINE_DISTANCE,
        "largest centroid distance of a fragment to its anchor",
    )
    anchor_min_faces: int = bounded(
        defaults.AGE_ANCHOR_MIN_FACES,
        POSITIVE_COUNT,
        "sub-clusters this large are anchors; smaller eras are thin",
    )
    era_years: int = bounded(
        defaults.AGE_ERA_YEARS,
        COUNT,
        "a fragment's dominant year within this many years of its anchor's",
    )
    gate: QualityGate = field(default_factory=QualityGate)
    dry_run: bool = described(False, "report what would change without changing anything")


def nested_trusted(trusted: Sequence[tuple[str, Path]]) -> str | None:
    """Why hand-sorted folders cannot stand for one identity each: one is (or lies inside)
    another, so its photos would join both identities; None when they are apart. `trusted`:
    (label, folder) with folders resolved."""
    for label, folder in trusted:
        for other_label, other in trusted:
            if other_label != label and (folder == other or other in folder.parents):
                return (
                    f"the folder of {label!r} ({folder}) is or lies inside that of "
                    f"{other_label!r} ({other}): its photos would join both identities. Give "
                    "each person a folder of their own (or list a folder of several people "
                    "under `mixed`)"
                )
    return None


@dataclass(frozen=True)
class ImportFoldersParams(Params):
    first_pass_threshold: float = bounded(
        defaults.IMPORT_FIRST_PASS_THRESHOLD,
        COSINE_DISTANCE,
        "a folder's faces farther than this from its centroid are dropped first",
    )
    second_pass_threshold: float = bounded(
        defaults.IMPORT_SECOND_PASS_THRESHOLD,
        COSINE_DISTANCE,
        "then those farther than this from the recomputed centroid",
    )
    match_threshold: float = bounded(
        defaults.IMPORT_MATCH_THRESHOLD,
        COSINE_DISTANCE,
        "a mixed folder's face joins every identity this close",
    )
    first_number: int = bounded(0, COUNT)  # 0: past the export's current maximum
    cannot_link: bool = defaults.CANNOT_LINK
    dry_run: bool = described(False, "report what would change without changing anything")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.second_pass_threshold > self.first_pass_threshold:
            raise InvalidParameter(
                "second_pass_threshold",
                self.second_pass_threshold,
                f"at most first_pass_threshold ({self.first_pass_threshold:g})",
            )


@dataclass(frozen=True)
class DiscoverParams(Params):
    known_threshold: float = bounded(
        defaults.DISCOVER_KNOWN_THRESHOLD,
        COSINE_DISTANCE,
        "largest distance to a known faceset's centroid that drops a face",
    )
    cluster_threshold: float = bounded(
        defaults.CLUSTER_THRESHOLD,
        COSINE_DISTANCE,
        "average-linkage cut of the faces no identity takes",
    )
    outlier_threshold: float = bounded(
        defaults.REFINE_OUTLIER_THRESHOLD,
        COSINE_DISTANCE,
        "distance to its cluster's centroid that rejects a face",
    )
    outlier_min_cluster: int = bounded(
        defaults.REFINE_OUTLIER_MIN_CLUSTER,
        COUNT,
        "clusters smaller than this keep their outliers",
    )
    min_faces: int = bounded(
        defaults.REFINE_MIN_FACES,
        POSITIVE_COUNT,
        "unique photos a faceset needs",
    )
    gate: QualityGate = field(default_factory=QualityGate)
    cannot_link: bool = defaults.CANNOT_LINK
    dry_run: bool = described(False, "report what would change without changing anything")


# --- requests ------------------------------------------------------------------------------
JobEvents = Iterator[common_pb2.JobEvent]
Stub = clustering_pb2_grpc.ClusteringStub


@dataclass(frozen=True)
class ClusterRequest(JobRequest):
    store: Path
    out: Path
    params: ClusterParams = field(default_factory=ClusterParams)
    proto = clustering_pb2.ClusterRequest
    stage = "cluster"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Cluster(self.to_proto())


@dataclass(frozen=True)
class RefineRequest(JobRequest):
    store: Path
    out: Path
    params: RefineParams = field(default_factory=RefineParams)
    proto = clustering_pb2.RefineRequest
    stage = "refine"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Refine(self.to_proto())


@dataclass(frozen=True)
class ExtendRequest(JobRequest):
    store: Path
    raw_out: Path
    refine_out: Path | None = None
    params: ExtendParams = field(default_factory=ExtendParams)
    proto = clustering_pb2.ExtendRequest
    stage = "extend"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Extend(self.to_proto())


@dataclass(frozen=True)
class DedupRequest(JobRequest):
    store: Path
    params: DedupParams = field(default_factory=DedupParams)
    proto = clustering_pb2.DedupRequest
    stage = "dedup"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Dedup(self.to_proto())


@dataclass(frozen=True)
class ConsolidateRequest(JobRequest):
    facesets_dir: Path
    store: Path
    params: ConsolidateParams = field(default_factory=ConsolidateParams)
    proto = clustering_pb2.ConsolidateRequest
    stage = "consolidate"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Consolidate(self.to_proto())


@dataclass(frozen=True)
class RouteSeed:
    """A person curated elsewhere (Immich): `key` its stable id, `name` its name ("" for an
    unnamed one), `face_ids` the store's faces the user gave it."""

    key: str
    name: str
    face_ids: tuple[int, ...]


@dataclass(frozen=True)
class RouteRequest(JobRequest):
    store: Path
    facesets_dir: Path
    sha256: Sequence[str] = ()  # empty: every face no faceset holds
    params: RouteParams = field(default_factory=RouteParams)
    seeds: Sequence[RouteSeed] = ()  # identities to seed (or update) before routing
    proto = clustering_pb2.RouteRequest
    stage = "route"

    def to_proto(self) -> clustering_pb2.RouteRequest:
        seeds = [
            clustering_pb2.RouteSeed(key=s.key, name=s.name, face_ids=list(s.face_ids))
            for s in self.seeds
        ]
        return clustering_pb2.RouteRequest(
            **{**self.proto_fields(), "sha256": sorted(self.sha256), "seeds": seeds}
        )

    def call(self, stub: Stub) -> JobEvents:
        return stub.Route(self.to_proto())


@dataclass(frozen=True)
class ImportFoldersRequest(JobRequest):
    """Hand-sorted folders (label -> folder) as identities, mixed folders routed to them."""

    store: Path
    export: Path
    trusted: Sequence[tuple[str, Path]]
    mixed: Sequence[Path] = ()
    params: ImportFoldersParams = field(default_factory=ImportFoldersParams)
    proto = clustering_pb2.ImportFoldersRequest
    stage = "importfolders"

    def to_proto(self) -> clustering_pb2.ImportFoldersRequest:
        trusted = [
            clustering_pb2.TrustedFolder(label=label, folder=absolute(folder))
            for label, folder in self.trusted
        ]
        return clustering_pb2.ImportFoldersRequest(**{**self.proto_fields(), "trusted": trusted})

    def call(self, stub: Stub) -> JobEvents:
        return stub.ImportFolders(self.to_proto())


@dataclass(frozen=True)
class DiscoverRequest(JobRequest):
    """New identities among the faces of photos under `root`, apart from the exported ones."""

    store: Path
    root: Path
    export: Path
    params: DiscoverParams = field(default_factory=DiscoverParams)
    proto = clustering_pb2.DiscoverRequest
    stage = "discover"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Discover(self.to_proto())


@dataclass(frozen=True)
class AgeProbeRequest(JobRequest):
    store: Path
    export_dir: Path
    faceset: str
    params: AgeProbeParams = field(default_factory=AgeProbeParams)
    proto = clustering_pb2.AgeProbeRequest
    stage = "ageprobe"

    def call(self, stub: Stub) -> JobEvents:
        return stub.AgeProbe(self.to_proto())


@dataclass(frozen=True)
class AgeSplitRequest(JobRequest):
    """`age split` (extend False) or `age extend` of one faceset of an export: the store, and
    the export (read, and its _eras/, _thin/ and era folders written)."""

    store: Path
    export_dir: Path
    faceset: str
    extend: bool = False
    params: AgeSplitParams = field(default_factory=AgeSplitParams)
    proto = clustering_pb2.AgeSplitRequest

    @property
    def stage(self) -> str:  # type: ignore[override]  # the base's is a class attribute
        return "age extend" if self.extend else "age split"

    def call(self, stub: Stub) -> JobEvents:
        request = self.to_proto()
        return stub.AgeExtend(request) if self.extend else stub.AgeSplit(request)


ClusteringJobRequest = (
    ClusterRequest
    | RefineRequest
    | ExtendRequest
    | DedupRequest
    | ConsolidateRequest
    | RouteRequest
    | ImportFoldersRequest
    | DiscoverRequest
    | AgeProbeRequest
    | AgeSplitRequest
)
