"""ExportSwap: roop-ready facesets from a refine manifest, faces read from the clustering
service, each crop's one-face check from the inference service's CountFaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesets.common.beneath import Beneath
from facesets.common.jobs import OutputAmongPhotos
from facesets.contract.export import ExportSwapParams
from facesets.contract.layout import read_json
from facesets.export import swap
from facesets.export.crops import load_image_oriented
from facesets.export.disagreements import face_ids as disagreement_face_ids
from facesets.export.disagreements import read_refine_disagreements
from facesets.export.jobs.context import ExportJob, JobContext, Peer, Writes
from facesets.export.records import (
    ExportInputError,
    FaceRow,
    read_refine_gates,
    read_refine_lookalikes,
    read_refine_made_from,
    read_refine_manifest,
)
from facesets.v1 import clustering_pb2, export_pb2

Request = export_pb2.ExportSwapRequest


def face_row(record: clustering_pb2.FaceRecord) -> FaceRow:
    face = record.face
    has_pose = face.HasField("pose")
    return FaceRow(
        face_id=record.face_id,
        sha256=record.sha256,
        path=record.path,
        bbox=tuple(face.bbox),  # type: ignore[arg-type]  # four values; a repeated field has no length
        kps=np.asarray(face.kps, np.float32).reshape(5, 2),
        det_score=face.det_score,
        embedding=np.frombuffer(face.embedding, "<f4"),
        face_short=face.face_short,
        blur=face.blur,
        image_width=record.image_width,
        image_height=record.image_height,
        aliases=list(record.aliases),
        yaw=face.pose.yaw if has_pose else None,
        pitch=face.pose.pitch if has_pose else None,
        roll=face.pose.roll if has_pose else None,
        landmark_2d_106=np.asarray(face.landmark_2d_106, np.float32).reshape(-1, 2)
        if face.landmark_2d_106
        else None,
    )


def singleton_face_ids(raw_manifest: Path) -> list[int]:
    """Faces `facesets cluster` left on their own: the pool --candidates rescues from."""
    manifest = read_json(raw_manifest)
    if manifest is None:
        raise FileNotFoundError(f"no raw manifest at {raw_manifest}")
    singles = manifest.get("singletons", {})
    return sorted(
        int(i) for i in (singles.get("face_ids", []) if isinstance(singles, dict) else singles)
    )


class ExportSwap(ExportJob[Request, ExportSwapParams]):
    request = Request
    params = ExportSwapParams
    needs = (Peer.CLUSTERING, Peer.INFERENCE)

    @staticmethod
    def _refine_manifest(ctx: JobContext[Request]) -> Path:
        return ctx.required(ctx.request.refine_manifest, "refine_manifest")

    @staticmethod
    def _raw_manifest(ctx: JobContext[Request]) -> Path | None:
        request = ctx.request
        return ctx.roots.check(request.raw_manifest, "raw_manifest") if request.candidates else None

    @staticmethod
    def _store(ctx: JobContext[Request]) -> str:
        return str(ctx.roots.check(ctx.request.store, "store"))

    def check(self, ctx: JobContext[Request], params: ExportSwapParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        self._refine_manifest(ctx)
        self._raw_manifest(ctx)
        self._store(ctx)

    def writes(self, ctx: JobContext[Request], params: ExportSwapParams) -> Writes:
        return Writes([ctx.out], create=True)

    def check_with_peers(self, ctx: JobContext[Request], params: ExportSwapParams) -> None:
        # A symbolic link inside OUT is refused first, on the disk alone (swap checks again).
        if ctx.out.is_dir():
            Beneath(ctx.out).refuse_links()
            swap.refuse_job_output(ctx.out)  # before the plan's faces are read
        photo = ctx.clustering.photo_under(self._store(ctx), str(ctx.out))
        if photo is not None:
            raise OutputAmongPhotos(ctx.out, photo)
        # The refine manifest's face ids name faces of the store it was made from: read from
        # another store (same model), they would export other people's crops.
        made_from = read_refine_made_from(self._refine_manifest(ctx))
        if made_from is not None:
            store = self._store(ctx)
            if ctx.clustering.open_store(store).store_id != made_from.store_id:
                raise ExportInputError(
                    f"{self._refine_manifest(ctx)} was made from the face store "
                    f"{made_from.store or 'of another library'}, not {store}: its face ids "
                    "name other faces there; give the store it was made from"
                )

    def run(self, ctx: JobContext[Request], params: ExportSwapParams) -> dict[str, object]:
        out, refine_manifest = ctx.out, self._refine_manifest(ctx)
        raw_manifest, store = self._raw_manifest(ctx), self._store(ctx)
        progress = ctx.progress
        specs = read_refine_manifest(refine_manifest)
        disagreements = read_refine_disagreements(refine_manifest)
        wanted = sorted(
            {face_id for spec in specs for face_id in spec.face_ids}
            | set(disagreement_face_ids(disagreements or []))
        )
        candidate_ids = singleton_face_ids(raw_manifest) if raw_manifest else []
        asked = len(wanted) + len(candidate_ids)
        progress("read faces", 0, asked)
        rows = {
            r.face_id: face_row(r)
            for r in ctx.clustering.read_faces(store, True, wanted + candidate_ids)
        }
        progress("read faces", asked, asked)
        faces_by_set = {
            spec.number: [rows[i] for i in spec.face_ids if i in rows] for spec in specs
        }
        candidates = [rows[i] for i in candidate_ids if i in rows] if raw_manifest else None

        def load_image(path: str | Path, sha256: str) -> np.ndarray:
            """A photo the store names, read only inside the roots (the store holds what
            clients sent), and only while it is still the photo embedded under `sha256`."""
            return load_image_oriented(ctx.roots.check_read(path, "image path"), sha256)

        return swap.export_swap(
            faces_by_set,
            out,
            params,
            load_image=load_image,
            count_faces=ctx.inference.count_faces,
            candidates=candidates,
            progress=progress,
            gates=read_refine_gates(refine_manifest),
            lookalikes=read_refine_lookalikes(refine_manifest),
            targets={spec.number: swap.SetTarget.of(spec) for spec in specs},
            disagreements=disagreements,
            disagreement_rows=rows,
            # The store exists (its faces were read): opening it only reads its metadata.
            store=swap.StoreIdentity(store, ctx.clustering.open_store(store).store_id),
        )
