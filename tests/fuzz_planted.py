"""The fuzzer's planted mode: hostile content on disk, not in request fields.

Each example builds, inside the services' only root, an export folder and stores a client who
can write there could leave behind: manifests whose paths climb out with `..` or are absolute,
faceset `dir` and crop entries pointing anywhere, maintenance runs whose moves point anywhere,
symlinked subfolders (a faceset, its faces/, report/) and symlinked manifests, FIFOs, hard
links, truncated PNGs, `.fsz` zips and stores, a store that is a symlink to one outside. Then one
RPC runs over it (its string fields drawn from those paths, faceset names and run ids), and a
sentinel tree beside the root, which all those paths point into, must be exactly as it was: no
file outside the root created, moved, changed or deleted. A finding is that, a call ending
UNKNOWN / INTERNAL / DEADLINE_EXCEEDED / UNAVAILABLE, or the sentinel's secret bytes in an answer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from maintenance_export import build_export
from report_export import crop_png

from facesets.clustering.store import FaceData, FaceStore, ImageData
from facesets.contract import layout
from facesets.v1 import clustering_pb2, clustering_pb2_grpc

SECRET = b"FACESETS-PLANTED-SECRET-51c2e8"
PLANTED_TARGETS = {
    "export": (
        "ExportSwap",
        "Report",
        "Occlusion",
        "DedupOptimize",
        "Restore",
        "Merge",
        "RejectCrops",
        "Split",
        "Name",
        "MarkDifferent",
    ),
    "clustering": None,  # every RPC
}
FACESETS = ("faceset_001", "faceset_002", "faceset_003")
RUN_IDS = ("planted-abs", "planted-rel", "planted-link", "planted-merge", "planted-faceset")
# What a planted example may hold; each is drawn on or off.
PLANTS = (
    "dir_dotdot",  # a faceset's "dir" climbs out with ..
    "dir_absolute",  # ... or names an outside folder
    "manifest_entry_outside",  # a faceset's "manifest" entry points outside
    "crops_outside",  # crop entries of a faceset manifest point outside
    "runs",  # maintenance runs whose moves point outside (both ends)
    "faceset_symlink",  # faceset_002 is a symlink to an outside folder
    "faces_symlink",  # faceset_001/faces is a symlink to an outside folder
    "report_symlink",  # report/ is a symlink to an outside folder
    "faceset_manifest_symlink",  # faceset_003/manifest.json links to an outside file
    "dropped_symlink",  # faceset_001/faces/_dropped links to an outside folder
    "merged_symlink",  # _merged links to an outside folder
    "fifo",  # a FIFO among the PNGs
    "hard_link",  # a PNG hard-linked to an outside PNG
    "truncated_png",  # a PNG cut short
    "truncated_fsz",  # a .fsz cut short
    "summaries_rows",  # report/summaries.json rows whose keys match, naming outside files
    "summaries_symlink",  # report/summaries.json links to an outside file
)


# --- the sentinel tree outside the root --------------------------------------------------------
def build_outside(outside: Path, png: bytes, store_template: Path) -> None:
    """The files every planted path points at: they must never change."""
    if outside.exists():
        shutil.rmtree(outside)
    (outside / "fakeset" / layout.CROPS_DIR).mkdir(parents=True)
    (outside / "fakeset" / layout.CROPS_DIR / "a.png").write_bytes(png)
    (outside / "fakeset" / layout.FACESET_MANIFEST).write_text(
        '{"faceset": "faceset_002", "crops": [{"file": "faceset_002/faces/a.png"}]}'
    )
    (outside / "faces").mkdir()
    (outside / "faces" / "x00.png").write_bytes(png)
    (outside / "dropped").mkdir()
    (outside / "dropped" / "d.png").write_bytes(png)
    (outside / "merged").mkdir()
    (outside / "report" / layout.REPORT_THUMBS_DIR).mkdir(parents=True)
    (outside / "report" / "index.html").write_bytes(b"<p>" + SECRET + b"</p>")
    (outside / "report" / layout.REPORT_THUMBS_DIR / "old.jpg").write_bytes(SECRET)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "secret.png").write_bytes(png)
    (outside / "escape").mkdir()
    shutil.copy(store_template, outside / "faces.db")


def tree_state(folder: Path) -> dict[str, str]:
    """Every name under `folder` with its type, mode, content hash or link target, links not
    followed: any change outside the root shows."""
    state = {}
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(top) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            else:
                what = ""
            state[str(path.relative_to(folder))] = f"{stat.filemode(info.st_mode)} {what}"
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> str:
    gone = sorted(set(before) - set(after))
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [f"{label} {', '.join(names[:6])}" for label, names in
             (("removed", gone), ("created", new), ("changed", changed)) if names]  # fmt: skip
    return "; ".join(parts)


# --- a planted export and stores ---------------------------------------------------------------
def synthetic_store(path: Path, photo: Path, faces: int = 12) -> None:
    """A small store of real photo paths and made-up embeddings in three tight groups (so
    clustering jobs find clusters)."""
    store = FaceStore(path)
    store.bind_model("facepack-mini", 128)
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((3, 128)).astype(np.float32)
    images = []
    for i in range(faces):
        sha = f"{i:064x}"
        vector = centres[i % 3] + 0.05 * rng.standard_normal(128).astype(np.float32)
        face = FaceData(
            bbox=(60, 60, 190, 190),
            kps=np.array([[90, 100], [160, 100], [125, 130], [100, 160], [150, 160]], np.float32),
            det_score=0.9,
            embedding=vector / np.linalg.norm(vector),
            face_short=130.0,
            blur=200.0,
        )
        size = photo.stat().st_size  # as embedded: jobs use no path of another size
        store.register_files([(str(photo), sha, size)])
        images.append(ImageData(sha256=sha, path=str(photo), size=size, faces=[face], width=250,
                                height=250))  # fmt: skip
    store.add_images(images)
    store.close()


@dataclass
class Planted:
    folder: Path  # the example's folder inside the root
    export: Path  # the planted export folder
    strings: list[str]  # what its string fields are drawn from


def plant(
    folder: Path, outside: Path, chosen: set[str], pngs: list[bytes], store_template: Path
) -> Planted:
    if folder.exists():
        shutil.rmtree(folder)  # never follows a symlink: only the links go
    folder.mkdir(parents=True)
    out = folder / "export"
    sets = {
        n: [(f"p{n}{i:02d}.png", pngs[(n + i) % len(pngs)]) for i in range(4)] for n in (1, 2, 3)
    }
    build_export(out, sets)
    manifest = layout.read_json(out / layout.EXPORT_MANIFEST)
    up = os.path.relpath(outside, out)  # ../../outside from the export folder
    entries = manifest["facesets"]
    if "dir_dotdot" in chosen:
        entries["faceset_002"]["dir"] = f"{up}/fakeset"
    if "dir_absolute" in chosen:
        entries["faceset_003"]["dir"] = str(outside / "fakeset")
    if "manifest_entry_outside" in chosen:
        entries["faceset_001"]["manifest"] = f"{up}/fakeset/{layout.FACESET_MANIFEST}"
    if "crops_outside" in chosen:
        set_manifest = out / "faceset_001" / layout.FACESET_MANIFEST
        data = layout.read_json(set_manifest)
        data["crops"].append({"file": f"{up}/secret.png", "rank": 5})
        data["crops"].append({"file": str(outside / "faces" / "x00.png"), "rank": 6})
        layout.atomic_write_json(set_manifest, data)
    if "runs" in chosen:
        manifest[layout.MAINTENANCE_RUNS] = _runs(up, outside)
    layout.atomic_write_json(out / layout.EXPORT_MANIFEST, manifest)
    if "faceset_symlink" in chosen:
        shutil.rmtree(out / "faceset_002")
        (out / "faceset_002").symlink_to(outside / "fakeset", target_is_directory=True)
    if "faces_symlink" in chosen:
        shutil.rmtree(out / "faceset_001" / layout.CROPS_DIR)
        (out / "faceset_001" / layout.CROPS_DIR).symlink_to(outside / "faces")
    if "report_symlink" in chosen:
        (out / layout.REPORT_DIR).symlink_to(outside / "report", target_is_directory=True)
    if "faceset_manifest_symlink" in chosen:
        (out / "faceset_003" / layout.FACESET_MANIFEST).unlink()
        (out / "faceset_003" / layout.FACESET_MANIFEST).symlink_to(
            outside / "fakeset" / layout.FACESET_MANIFEST
        )
    faces3 = out / "faceset_003" / layout.CROPS_DIR
    if "dropped_symlink" in chosen and "faces_symlink" not in chosen:
        link = out / "faceset_001" / layout.CROPS_DIR / layout.DROPPED_DIR
        if not link.is_symlink() and not link.exists():
            link.symlink_to(outside / "dropped", target_is_directory=True)
    if "merged_symlink" in chosen:
        (out / layout.MERGED_DIR).symlink_to(outside / "merged", target_is_directory=True)
    if "fifo" in chosen:
        os.mkfifo(faces3 / "pipe.png")
    if "hard_link" in chosen:
        os.link(outside / "secret.png", faces3 / "hard.png")
    if "truncated_png" in chosen:
        (faces3 / "p301.png").write_bytes(pngs[0][: len(pngs[0]) // 2])
    if "truncated_fsz" in chosen:
        fsz = next((out / "faceset_003").glob("*.fsz"))
        fsz.write_bytes(fsz.read_bytes()[:100])
    if "report_symlink" not in chosen and chosen & {"summaries_rows", "summaries_symlink"}:
        plant_summaries(out, outside, up, "summaries_symlink" in chosen)
    return Planted(folder, out, _stores(folder, outside, store_template, out))


def plant_summaries(out: Path, outside: Path, up: str, link: bool) -> None:
    """A report/ whose summaries.json a refresh would take rows from: keys that match the
    manifests as they are now (as a report left them), pages present, and rows naming crops,
    dropped faces and thumbnails outside OUT; or the file a link to an outside one."""
    from facesets.export.report.model import page_name
    from facesets.export.report.summaries import SUMMARIES, Summaries

    report = out / layout.REPORT_DIR
    (report / layout.REPORT_THUMBS_DIR).mkdir(parents=True, exist_ok=True)
    if link:
        (out / SUMMARIES).symlink_to(outside / "secret.txt")
        return
    entries = layout.read_json(out / layout.EXPORT_MANIFEST)["facesets"]
    summaries = Summaries(out, set())
    rows = []
    for name, entry in sorted(entries.items()):
        try:
            key = summaries._key("facesets", name, entry)
        except (OSError, ValueError):  # a planted link on the way: the job refuses it
            continue
        page = report / page_name("facesets", name)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<p>old page</p>")
        # faceset_001's row passes every check (it is reused: another set's crop, a thumbnail
        # the cache lacks); the others name files outside OUT
        far = name != "faceset_001"
        shown = f"{up}/secret.png" if far else "faceset_002/faces/p200.png"
        crop = {"file": shown, "rank": 1, "in_top": True, "composite": 1.0}
        record = {
            "kept": 4, "faces": 4, "top": 4, "recropped": 0, "mean_quality": 1.0,
            "sources": [str(outside)], "flags": [], "crops": [crop | {"title": "t"}],
            "dropped": [{
                "reason": "rejected", "detail": "", "face_id": 1, "source": "",
                "thumbnail": str(outside / "dropped" / "d.png") if far else None, "title": "t",
            }],
            "dropped_counts": {}, "fsz": [f"{up}/secret.txt" if far else "x.fsz"],
            "skipped": [], "into": None, "years": None, "small_px": None, "label": "planted",
        }  # fmt: skip
        rows.append({
            "partition": "facesets", "name": name, "entry": record,
            "key": key,
            "thumbs": {shown: f"{up}/report/thumbs/old.jpg" if far else "0" * 24 + ".jpg"},
        })  # fmt: skip
    layout.atomic_write_json(out / SUMMARIES, {"version": 1, "rows": rows})


def _runs(up: str, outside: Path) -> list[dict[str, Any]]:
    """Runs whose moves read from the manifest point out of the export, both ends."""

    def move(src: str, dst: str, kind: str = "file", reason: str = "occluded") -> dict[str, Any]:
        return {"src": src, "dst": dst, "kind": kind, "reason": reason, "restored": False}

    def run(run_id: str, kind: str, moves: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": run_id, "kind": kind, "parameters": {}, "time": "2026-01-01T00:00:00Z",
                "counts": {}, "moves": moves}  # fmt: skip

    dropped = "faceset_001/faces/_dropped"
    return [
        run("planted-abs", "occlusion", [
            move(f"{dropped}/stolen.png", str(outside / "secret.txt")),
            move(str(outside / "escape" / "pushed.png"), f"{dropped}/p100.png"),
        ]),
        run("planted-rel", "occlusion", [
            move(f"{up}/escape/escaped.png", "faceset_001/faces/p101.png"),
            move(f"{dropped}/secret.txt", f"{up}/secret.txt"),
        ]),
        run("planted-link", "dedup-optimize", [
            move("faceset_002/faces/a.png", "faceset_003/faces/p300.png"),
        ]),
        run("planted-merge", "merge", [
            move("faceset_002", f"{up}/escape/set", kind="faceset", reason="merged"),
            move(f"{up}/secret.txt", "faceset_003/manifest.json", kind="saved_manifest"),
            move("faceset_001/manifest.json", f"{up}/secret.txt", kind="saved_manifest"),
        ]),
        run("planted-faceset", "occlusion", [
            move("faceset_003", str(outside / "escape" / "set3"), kind="faceset",
                 reason="masked"),
        ]),
    ]  # fmt: skip


def _stores(folder: Path, outside: Path, template: Path, out: Path) -> list[str]:
    """Stores and folders for the string fields: a real store, one linked to a store outside,
    a truncated one, a folder, an empty file, a foreign file; an output folder whose person
    folder links outside and whose manifest lists outside files."""
    shutil.copy(template, folder / "store.db")
    (folder / "linked.db").symlink_to(outside / "faces.db")
    (folder / "truncated.db").write_bytes(template.read_bytes()[:3000])
    (folder / "folder.db").mkdir()
    (folder / "empty.db").write_bytes(b"")
    (folder / "foreign.db").write_bytes(b"name,age\nalice,30\n")
    raw = folder / "raw"
    raw.mkdir()
    (raw / "person_0001").symlink_to(outside / "escape", target_is_directory=True)
    layout.atomic_write_json(
        raw / "manifest.json",
        {"files": [str(outside / "secret.txt"), "../../outside/secret.txt"],
         "people": {"person_0001": {"dir": str(outside / "escape")}}},
    )  # fmt: skip
    (folder / "src").mkdir()
    (folder / "src" / "outside").symlink_to(outside, target_is_directory=True)
    os.mkfifo(folder / "src" / "pipe.jpg")
    return [
        str(out),
        str(folder / "store.db"),
        str(folder / "linked.db"),
        str(folder / "truncated.db"),
        str(folder / "folder.db"),
        str(folder / "empty.db"),
        str(folder / "foreign.db"),
        str(raw),
        str(raw / "manifest.json"),
        str(folder / "src"),
        str(out / "faceset_001"),
        str(folder / "new-out"),
    ]


# --- running one target ------------------------------------------------------------------------
@dataclass
class PlantedSetup:
    root: Path  # the services' only root; examples are planted under root/planted
    outside: Path  # the sentinel tree, beside the root
    pngs: list[bytes]
    store_template: Path
    photo: Path
    refine_manifest: str  # a real refine manifest of the template store ("" without one)


def prepare(root: Path, outside: Path, photo: Path, clustering: str | None = None) -> PlantedSetup:
    """The sentinel tree, a store template and, through the clustering service at
    `clustering`, a refine manifest of it: ExportSwap then writes real facesets into the
    planted export folders."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "planted-photo.jpg").write_bytes(photo.read_bytes())
    template = root / "planted-template.db"
    if not template.exists():
        synthetic_store(template, root / "planted-photo.jpg")
    pngs = [crop_png(900 + i, side=48) for i in range(6)]
    build_outside(outside, pngs[0], template)
    refine = ""
    if clustering:
        base, refined = root / "planted-base.db", root / "planted-refined"
        shutil.copy(template, base)
        request = clustering_pb2.RefineRequest(
            store=str(base), out=str(refined), min_faces=2, cannot_link=False
        )
        with grpc.insecure_channel(clustering) as channel:
            for _ in clustering_pb2_grpc.ClusteringStub(channel).Refine(request, timeout=120):
                pass
        refine = str(refined / "refine_manifest.json")
    return PlantedSetup(root, outside, pngs, template, root / "planted-photo.jpg", refine)


def planted_targets(services: dict[str, Any]) -> list[tuple[str, MethodDescriptor]]:
    targets = []
    for service, names in PLANTED_TARGETS.items():
        for method in services[service].methods:
            if names is None or method.name in names:
                targets.append((service, method))
    return targets


def fuzz_planted(
    channel: grpc.Channel,
    service: str,
    method: MethodDescriptor,
    setup: PlantedSetup,
    strategies_for: Callable[[st.SearchStrategy[str]], Any],
    call_once: Callable[..., Any],
    report: Any,
    finding: Callable[[str, str, str], Any],
    seconds: float,
    batch: int,
) -> None:
    """Examples of `service.method` over planted folders until `seconds` pass (at least one
    batch); findings go to report.findings."""
    target = f"{service}.{method.name}"
    folder = setup.root / "planted" / f"{service}-{method.name}"
    strings = plant(folder, setup.outside, set(), setup.pngs, setup.store_template).strings
    expected = tree_state(setup.outside)
    pool = st.sampled_from([*strings, *FACESETS, *RUN_IDS, "../faceset_001", "faceset_001/.."])
    # A few plants per example, one of them taken in turn so that a short pass meets each
    # (a job refuses a folder with many problems at the first, before it meets the others).
    plants = st.sets(st.sampled_from(PLANTS), max_size=2)
    export = str(folder / "export")
    # The fields that name what was planted draw from what was planted, mostly.
    aimed = {
        "out": st.integers(0, 9).flatmap(
            lambda n: st.just(export) if n < 8 else st.sampled_from(strings)
        ),
        "run_id": st.sampled_from([*RUN_IDS, ""]),
        "faceset": st.sampled_from([*FACESETS, "", "../faceset_001", "/faceset_001"]),
        "into": st.sampled_from([*FACESETS, "", "faceset_001/.."]),
        # The refine manifest's own store, which no example replaces, or a planted one.
        "store": st.sampled_from(
            [str(setup.root / "planted-base.db")] * 2 * bool(setup.refine_manifest) + strings[1:7]
        ),
        "src": st.sampled_from(strings),
        "refine_manifest": st.sampled_from(
            [setup.refine_manifest] * 3 + [strings[8], ""] if setup.refine_manifest else strings
        ),
    }
    started = time.monotonic()
    for round_seed in range(1_000_000):

        @seed(round_seed)
        @settings(
            max_examples=batch,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(plants, st.data())
        def one_batch(drawn_plants: set[str], data: st.DataObject) -> None:
            turn = report.executions
            # Two examples in three carry the planted maintenance runs (restore and undo
            # replay them).
            chosen = {*drawn_plants, PLANTS[turn % len(PLANTS)], *(["runs"] * (turn % 3 != 2))}
            planted = plant(folder, setup.outside, chosen, setup.pngs, setup.store_template)
            # The drawn requests name this example's paths: same layout, same folder.
            assert planted.strings == strings
            one = strategies_for(pool).message(method.input_type)
            drawn = data.draw(
                st.lists(one, min_size=1, max_size=3) if method.client_streaming else st.tuples(one)
            )
            requests = list(drawn)
            for request in requests:
                fields = request.DESCRIPTOR.fields_by_name
                for name, pool_of in aimed.items():
                    field = fields.get(name)
                    if field is None or field.type != field.TYPE_STRING or field.is_repeated:
                        continue
                    if data.draw(st.integers(0, 9)) < 9:  # the simplest example aims too
                        setattr(request, name, data.draw(pool_of))
                if "run_id" in fields and "faceset" in fields and data.draw(st.integers(0, 3)) < 3:
                    # A restore names a run or a faceset; both is refused before any move.
                    request.ClearField("faceset" if data.draw(st.booleans()) else "run_id")
            report.executions += 1
            found = call_once(channel, service, method, requests)
            if found is not None and len(report.findings) < 20:
                report.findings.append(found)
            now = tree_state(setup.outside)
            if now != expected:
                if len(report.findings) < 20:
                    report.findings.append(
                        finding(
                            target,
                            "changed files outside the root",
                            f"{changes(expected, now)}; planted {sorted(chosen)} <- {requests!r}",
                        )
                    )
                build_outside(setup.outside, setup.pngs[0], setup.store_template)

        one_batch()
        if time.monotonic() - started >= seconds:
            break
