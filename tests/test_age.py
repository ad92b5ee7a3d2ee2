"""Era splits (`facesets age probe|split|extend`).

The rules are shown on synthetic stores whose embeddings and capture years are controlled:
every face is e0 + era direction + a little noise, so faces of one era lie ~0.04 apart, faces
of two orthogonal eras ~0.52, and a fragment leaning towards an anchor (0.28 of its direction)
sits ~0.36 from that anchor's centroid but ~0.39 from its faces (a sub-cluster of its own at
0.35 that may join at 0.40). A last test runs the commands end to end on dated LFW copies.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from dated_photos import dated_copy, snapshot

from facesets.clustering.jobs.age_probe import age_probe
from facesets.clustering.jobs.age_split import age_extend, age_split
from facesets.clustering.jobs.job import JobError
from facesets.clustering.store import FaceData, FaceStore, ImageData
from facesets.contract import layout
from facesets.contract.clustering import AgeProbeParams, AgeSplitParams
from services import ServiceProcess, running_services, service_flags
from services import run_facesets as run_command

DIM = 128
LEAN = 0.28  # a fragment's share of its anchor's direction


@dataclass
class Synthetic:
    """A store of synthetic faces over real (tiny) files, and an export of one faceset."""

    root: Path
    store: FaceStore
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    count: int = 0
    ids: dict[str, list[int]] = field(default_factory=dict)

    @property
    def export(self) -> Path:
        return self.root / "export"

    def add(
        self,
        group: str,
        faces: int,
        direction: dict[int, float],
        year: int | None,
        folder: str = "photos/person",
    ) -> list[int]:
        """`faces` photos of one face each, taken in `year` (None: no EXIF date)."""
        images = []
        for _ in range(faces):
            self.count += 1
            vector = np.zeros(DIM, np.float32)
            vector[0] = 1.0
            for axis, weight in direction.items():
                vector[axis] += weight
            noise = self.rng.normal(size=DIM - 20).astype(np.float32)
            vector[20:] += 0.3 * noise / np.linalg.norm(noise)
            path = self.root / folder / f"{group}_{self.count:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"photo {self.count}".encode())
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            face = FaceData(
                bbox=(10.0, 10.0, 210.0, 210.0),
                kps=np.zeros((5, 2), np.float32),
                det_score=0.9,
                embedding=vector / np.linalg.norm(vector),
                face_short=200.0,
                blur=20.0,
            )
            capture = "" if year is None else f"{year}-06-{1 + self.count % 28:02d}T12:00:00"
            size = path.stat().st_size
            images.append(ImageData(sha, str(path), size, 250, 250, capture, [face]))
        self.store.add_images(images)
        table = self.store.face_table(with_embeddings=False)
        by_path = {row.sha256: row.path for row in self.store.images()}
        wanted = {img.sha256 for img in images}
        new = [int(f) for f, sha in zip(table.face_id, table.sha256, strict=True) if sha in wanted]
        self.ids.setdefault(group, []).extend(sorted(new))
        assert all(by_path[s] for s in wanted)
        return sorted(new)

    def curate(self, face_ids: list[int], name: str = "faceset_001") -> None:
        """An export holding one faceset of these faces, as export-swap would list it."""
        rows = {int(f): sha for f, sha in zip(*self._table(), strict=True)}
        paths = {row.sha256: row.path for row in self.store.images()}
        crops = [{"face_id": f, "source": paths[rows[f]], "aliases": []} for f in face_ids]
        manifest = f"{name}/{layout.FACESET_MANIFEST}"
        layout.atomic_write_json(self.export / manifest, {"faceset": name, "crops": crops})
        layout.atomic_write_json(
            self.export / layout.EXPORT_MANIFEST,
            {"facesets": {name: {"manifest": manifest, "dir": name}}},
        )

    def _table(self) -> tuple[list[int], list[str]]:
        table = self.store.face_table(with_embeddings=False)
        return [int(f) for f in table.face_id], list(table.sha256)


def lean(anchor_axis: int, own_axis: int, share: float = LEAN) -> dict[int, float]:
    """A direction leaning `share` towards an anchor's, the rest its own (unit length)."""
    return {anchor_axis: share, own_axis: float(np.sqrt(1.0 - share**2))}


@pytest.fixture
def synthetic(tmp_path: Path) -> Synthetic:
    store = FaceStore(tmp_path / "faces.db")
    store.bind_model("synthetic", DIM)
    return Synthetic(tmp_path, store)


def build_two_eras(s: Synthetic, late_year: int = 2015) -> None:
    """Anchor A (25 faces, 2000-2002, dominant 2001) and anchor B (25 faces, late_year), then
    fragments: F1 leans to A, dated 2004 (joins A); F2 leans to A, dated 2014 (nearest anchor A,
    11 years off: standalone though B's year is close); F3 stands apart (no anchor within 0.40);
    F4 leans to A but has no capture date (cannot pass the year rule). A stranger, and an
    A-like face outside the faceset's folder, are never recovered."""
    for year, count in ((2000, 8), (2001, 10), (2002, 7)):
        s.add("A", count, {1: 1.0}, year)
    s.add("B", 25, {2: 1.0}, late_year)
    s.add("F1", 6, lean(1, 3), 2004)
    s.add("F2", 6, lean(1, 4), 2014)
    s.add("F3", 6, {5: 1.0}, 2001)
    s.add("F4", 3, lean(1, 6), None)
    s.add("stranger", 5, {7: 3.0}, 2001)
    s.add("elsewhere", 4, {1: 1.0}, 2001, folder="photos/other")
    s.curate(s.ids["A"][:15] + s.ids["B"][:15])


def eras_by_group(s: Synthetic, plan: dict) -> dict[str, set[str]]:
    """Per synthetic group, the eras holding its faces."""
    where: dict[int, str] = {}
    for era in plan["facesets"]:
        for face_id in era["face_ids"]:
            where[face_id] = era["name"]
    return {g: {where[f] for f in ids if f in where} for g, ids in s.ids.items()}


def read_plan(s: Synthetic, name: str = "faceset_001") -> dict:
    return json.loads((s.export / "_eras" / f"{name}.json").read_text())


def test_split_anchor_rule_and_five_year_rule(synthetic: Synthetic) -> None:
    s = synthetic
    build_two_eras(s)
    outcome = age_split(s.store, s.export, "1", AgeSplitParams())
    plan = read_plan(s)
    groups = eras_by_group(s, plan)
    eras = {e["name"]: e for e in plan["facesets"]}

    # Anchors: A (with F1 joined) and B, named by year; every fragment else stands alone.
    assert groups["A"] == groups["F1"] == {"faceset_001_era_01"}
    era_a = eras["faceset_001_era_01"]
    assert era_a["anchor"] and era_a["partition"] == "eras" and era_a["dir"] == era_a["name"]
    assert era_a["years"]["dominant"] == 2001 and era_a["label"] == "2000-2004"
    assert len(era_a["face_ids"]) == 31
    assert [j["decision"] for j in era_a["joined"]] == ["joined"]
    (era_b,) = groups["B"]
    assert eras[era_b]["anchor"] and eras[era_b]["years"]["dominant"] == 2015
    assert len(eras[era_b]["face_ids"]) == 25
    for fragment in ("F2", "F3", "F4"):
        (era,) = groups[fragment]
        assert not eras[era]["anchor"], fragment
        assert eras[era]["partition"] == "thin_eras" and eras[era]["dir"] == f"_thin/{era}"
        assert "THIN.txt" in eras[era]["markers"] and f"{era}.txt" in eras[era]["markers"]
    assert len({*groups["F2"], *groups["F3"], *groups["F4"]}) == 3
    why = {d["first_face_id"]: d["why"] for d in outcome.summary["fragments"] if "why" in d}
    assert "> 5 years" in why[min(s.ids["F2"])]  # nearest anchor A, though B's year is close
    assert "distance" in why[min(s.ids["F3"])]
    assert "no capture year" in why[min(s.ids["F4"])]
    # Strangers and faces outside the faceset's folders are not recovered.
    assert not groups["stranger"] and not groups["elsewhere"]
    # Photos without a capture date are reported, never guessed.
    assert outcome.summary["no_capture_time"] == 3
    assert len(plan["no_capture_time"]) == 3

    # A re-run changes nothing; a dry run writes nothing.
    mtime = (s.export / "_eras" / "faceset_001.json").stat().st_mtime_ns
    again = age_split(s.store, s.export, "faceset_001", AgeSplitParams())
    assert not again.summary["plan_written"] and not again.summary["changed"]
    dry = age_split(s.store, s.export, "faceset_001", AgeSplitParams(dry_run=True))
    assert not dry.summary["plan_written"] and dry.manifest_path is None
    assert (s.export / "_eras" / "faceset_001.json").stat().st_mtime_ns == mtime


def test_a_wider_year_window_lets_the_fragment_join(synthetic: Synthetic) -> None:
    s = synthetic
    build_two_eras(s)
    age_split(s.store, s.export, "1", AgeSplitParams(era_years=15))
    groups = eras_by_group(s, read_plan(s))
    assert groups["F2"] == groups["A"]  # 13 years off its nearest anchor, within 15
    assert groups["F3"] != groups["A"]  # still too far, whatever the years


def test_a_fresh_dry_run_writes_nothing(synthetic: Synthetic) -> None:
    s = synthetic
    build_two_eras(s)
    outcome = age_split(s.store, s.export, "1", AgeSplitParams(dry_run=True))
    assert len(outcome.summary["eras"]) == 5
    assert not (s.export / "_eras").exists()


def test_extend_slots_new_faces_without_renumbering(synthetic: Synthetic) -> None:
    s = synthetic
    build_two_eras(s)
    with pytest.raises(JobError, match="age split"):
        age_extend(s.store, s.export, "1", AgeSplitParams())
    age_split(s.store, s.export, "1", AgeSplitParams())
    before = {e["name"]: e for e in read_plan(s)["facesets"]}

    s.add("G1", 5, lean(1, 8), 2003)  # leans to A, 2 years off: joins A
    s.add("G2", 5, lean(2, 9), 2001)  # leans to B, 14 years off: a new standalone era
    s.add("G3", 22, {10: 1.0}, 2022)  # a new anchor
    outcome = age_extend(s.store, s.export, "1", AgeSplitParams())
    assert outcome.summary["new_faces"] == 32
    plan = read_plan(s)
    after = {e["name"]: e for e in plan["facesets"]}
    groups = eras_by_group(s, plan)

    # The run is recorded in the export's top-level manifest, with the faces slotted per era.
    top = json.loads((s.export / layout.EXPORT_MANIFEST).read_text())
    assert "faceset_001" in top["facesets"]  # the rest of the manifest is kept
    (block,) = top[layout.AGE_EXTEND_RUNS]
    assert block["faceset"] == "faceset_001" and block["time"]
    assert block["parameters"] == plan["parameters"]
    per_era = block["counts"]["per_era"]
    gained = {
        n: len(set(e["face_ids"]) - set(before.get(n, {}).get("face_ids", [])))
        for n, e in after.items()
    }
    assert per_era == {n: c for n, c in gained.items() if c} == outcome.summary["slotted"]
    assert per_era["faceset_001_era_01"] == 5  # G1 joined A
    assert sum(per_era.values()) == block["counts"]["slotted"] == 32
    assert block["counts"]["new_faces"] == 32 and block["counts"]["eras"] == len(after)

    for name, era in before.items():  # nothing renumbered, nothing lost
        assert after[name]["number"] == era["number"]
        assert set(era["face_ids"]) <= set(after[name]["face_ids"])
    assert groups["G1"] == groups["A"] == {"faceset_001_era_01"}
    new = sorted(set(after) - set(before))
    assert groups["G2"] | groups["G3"] == set(new)
    assert min(after[n]["number"] for n in new) == max(e["number"] for e in before.values()) + 1
    (g3,) = groups["G3"]
    assert after[g3]["anchor"] and after[g3]["partition"] == "eras"
    (g2,) = groups["G2"]
    assert after[g2]["partition"] == "thin_eras"

    # Nothing new: nothing changes.
    again = age_extend(s.store, s.export, "1", AgeSplitParams())
    assert again.summary["new_faces"] == 0 and not again.summary["plan_written"]
    assert json.loads((s.export / layout.EXPORT_MANIFEST).read_text()) == top


def test_probe_verdicts(synthetic: Synthetic, tmp_path: Path) -> None:
    s = synthetic
    build_two_eras(s)
    s.curate(s.ids["A"] + s.ids["B"] + s.ids["F1"])
    probe = age_probe(s.store, s.export, "faceset_001", AgeProbeParams()).summary
    assert probe["sortable"], probe["why"]
    assert probe["subcluster_sizes"]["0.35"][:2] == [25, 25]
    assert probe["subcluster_sizes"]["0.50"][0] >= 31  # F1 merges with A at a looser cut
    assert sum(probe["histogram"]["counts"]) == probe["histogram"]["pairs"] == 56 * 55 // 2
    years = sorted(g["years"]["dominant"] for g in probe["subcluster_years"][:2])
    assert years == [2001, 2015]

    # The same faces, both eras dated within five years of each other: not sortable.
    other = FaceStore(tmp_path / "other" / "faces.db")
    other.bind_model("synthetic", DIM)
    same = Synthetic(tmp_path / "other", other)
    build_two_eras(same, late_year=2004)
    same.curate(same.ids["A"] + same.ids["B"])
    verdict = age_probe(same.store, same.export, "1", AgeProbeParams()).summary
    assert not verdict["sortable"] and "within 5 years" in verdict["why"]
    # One era only: not sortable either.
    same.curate(same.ids["A"])
    assert not age_probe(same.store, same.export, "1", AgeProbeParams()).summary["sortable"]


def test_unknown_faceset_is_refused(synthetic: Synthetic) -> None:
    s = synthetic
    build_two_eras(s)
    with pytest.raises(JobError, match="faceset_009"):
        age_split(s.store, s.export, "9", AgeSplitParams())


# --- end to end on dated copies of LFW photos ---------------------------------------------------


@pytest.fixture
def services(shared_dir: Path, tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    """The services the commands share (their own start-up is tested elsewhere)."""
    (tmp_path / "services").mkdir()
    with running_services(tmp_path / "services", [tmp_path, shared_dir]) as started:
        yield started


def test_age_commands_end_to_end_on_dated_lfw_photos(
    lfw_dir: Path, tmp_path: Path, services: dict[str, ServiceProcess]
) -> None:
    def run_facesets(*args: str) -> subprocess.CompletedProcess[str]:
        return run_command(*args, *service_flags(services, *args[:2]))

    src = tmp_path / "photos" / "mixed"
    for i, photo in enumerate(sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:22]):
        dated_copy(photo, src / photo.name, f"1999:{1 + i % 12:02d}:10 12:00:00")
    for i, photo in enumerate(sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[:5]):
        dated_copy(photo, src / photo.name, None if i == 4 else "2010:03:03 09:00:00")
    out = tmp_path / "run"
    made = run_facesets("run", str(src.parent), str(out), "--min-faces", "10", "--json")
    assert made.returncode == 0, made.stderr
    export = out / layout.RUN_EXPORT_DIR
    top = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    blair = max(top["facesets"], key=lambda n: top["facesets"][n]["counts"]["kept"])

    probe = run_facesets("age", "probe", str(export), blair, "--json")
    assert probe.returncode == 0, probe.stderr
    verdict = json.loads(probe.stdout)
    assert not verdict["sortable"]  # one person, one year
    assert set(verdict["subcluster_sizes"]) == {"0.30", "0.35", "0.40", "0.45", "0.50"}

    wide = ("--recover-threshold", "1.5", "--tighten-threshold", "1.5", "--sub-threshold", "0.6")
    split = ("age", "split", str(export), blair, *wide, "--anchor-min-faces", "10", "--json")
    first = run_facesets(*split)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["no_capture_time"] == 1  # the undated Powell photo, reported
    after = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    assert after["facesets"] == top["facesets"]  # facesets untouched, eras apart
    assert after["eras"] and after["thin_eras"]
    for name, entry in after["eras"].items():
        folder = export / entry["dir"]
        assert entry["dir"] == name and (folder / f"{name}.txt").read_text().count("1999")
        assert (export / entry["fsz_top"]).is_file() and (export / entry["fsz_all"]).is_file()
        assert json.loads((export / entry["manifest"]).read_text())["crops"]
        assert not (folder / "THIN.txt").exists()
    powell_eras = set()
    for name, entry in after["thin_eras"].items():
        assert entry["dir"] == f"_thin/{name}" and (export / entry["dir"] / "THIN.txt").is_file()
        sources = [
            c["source"] for c in json.loads((export / entry["manifest"]).read_text())["crops"]
        ]
        if any("Colin_Powell" in s for s in sources):
            powell_eras.add(name)
    assert powell_eras  # the other person recovered by the wide thresholds is a thin era
    assert "Era buckets" in (export / layout.REPORT_DIR / layout.REPORT_INDEX).read_text()

    before = snapshot(export)
    again = run_facesets(*split)
    assert again.returncode == 0, again.stderr
    assert snapshot(export) == before
    dry = run_facesets(*split[:-3], "--anchor-min-faces", "40", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert all(e["thin"] for e in json.loads(dry.stdout)["eras"].values())
    assert snapshot(export) == before


def test_export_moves_an_era_between_partitions_and_retires_dropped_ones(tmp_path: Path) -> None:
    """The export's merge: an era of a group that moved (thin -> eras) or vanished leaves its
    old partition, and the files its own manifest says it wrote there go; facesets stay."""
    from facesets.export import swap

    out = tmp_path / "export"

    def written(folder: str, name: str) -> dict:
        files = [f"{folder}/THIN.txt", f"{folder}/{name}.txt", f"{folder}/manifest.json"]
        for rel in files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text("x")
        (out / folder / "manifest.json").write_text(json.dumps({"files": files}))
        return {"dir": folder, "manifest": f"{folder}/manifest.json", "group": "faceset_001"}

    top = {
        "facesets": {"faceset_001": {"dir": "faceset_001", "manifest": "faceset_001/m.json"}},
        "thin_eras": {
            "faceset_001_era_02": written("_thin/faceset_001_era_02", "faceset_001_era_02"),
            "faceset_001_era_03": written("_thin/faceset_001_era_03", "faceset_001_era_03"),
        },
    }
    (out / "_thin" / "keep.txt").write_text("someone else's")
    moved = swap.SetTarget("faceset_001_era_02", "faceset_001_era_02", "eras", (), "faceset_001")
    result = swap._SetResult(  # noqa: SLF001 (the merge step alone)
        number=2, target=moved, entry={"dir": moved.dir, "group": "faceset_001"}, centroid=None
    )
    merged = swap._merge_entries(out, top, [result])  # noqa: SLF001
    assert set(merged["eras"]) == {"faceset_001_era_02"}
    assert merged["thin_eras"] == {}
    assert merged["facesets"] == top["facesets"]
    assert not (out / "_thin" / "faceset_001_era_02").exists()
    assert not (out / "_thin" / "faceset_001_era_03").exists()
    assert (out / "_thin" / "keep.txt").is_file()
