"""Real face stores for tests: LFW photos through the mini pack, stored in a SQLite FaceStore.

Inference runs once per photo per test session (results are cached in memory); each test then
builds its own store over its own copies of the photos, so it may delete, alias or re-encode
files freely.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from conftest import reference_session_options
from PIL import Image

from facesets.clustering.store import FaceData, FaceStore, ImageData
from facesets.inference.sharpness import MEASURE, face_sharpness

MODEL_PACK = "facepack-mini"
EMBEDDING_DIM = 128
# LFW photos are 250 px square, so a 320 px detector input sees them at full resolution.
DET_SIZE = 320

_lock = threading.Lock()
_apps: dict[tuple[str, int], object] = {}
_results: dict[tuple[str, str, int], ImageData] = {}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _app(model_root: Path, det_size: int) -> object:
    key = (str(model_root), det_size)
    if key not in _apps:
        from insightface.app import FaceAnalysis

        app = FaceAnalysis(
            name=MODEL_PACK,
            root=str(model_root),
            providers=["CPUExecutionProvider"],
            sess_options=reference_session_options(),
        )
        app.prepare(ctx_id=-1, det_size=(det_size, det_size))
        _apps[key] = app
    return _apps[key]


def _face_data(face: object, gray: np.ndarray) -> FaceData:
    x1, y1, x2, y2 = (float(v) for v in face.bbox)  # type: ignore[attr-defined]
    blur = face_sharpness(gray, np.array([x1, y1, x2, y2]))
    embedding = np.asarray(face.embedding, dtype=np.float32)  # type: ignore[attr-defined]
    embedding = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
    return FaceData(
        bbox=(x1, y1, x2, y2),
        kps=np.asarray(face.kps, dtype=np.float32).reshape(5, 2),  # type: ignore[attr-defined]
        det_score=float(face.det_score),  # type: ignore[attr-defined]
        embedding=embedding,
        face_short=min(x2 - x1, y2 - y1),
        blur=blur,
        blur_measure=MEASURE,
    )


def embed_photo(path: Path, model_root: Path, det_size: int = DET_SIZE) -> ImageData:
    """Detect and embed the faces of one photo (cached by content for the session)."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    key = (str(model_root), sha, det_size)
    with _lock:
        cached = _results.get(key)
        if cached is None:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"not an image: {path}")
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            faces = sorted(
                _app(model_root, det_size).get(image),  # type: ignore[attr-defined]
                key=lambda f: (float(f.bbox[0]), float(f.bbox[1])),
            )
            cached = ImageData(
                sha256=sha,
                path=str(path),
                size=len(data),
                width=int(image.shape[1]),
                height=int(image.shape[0]),
                faces=[_face_data(f, gray) for f in faces],
            )
            _results[key] = cached
    return dataclasses.replace(cached, path=str(path.resolve()))


def embed_photos(paths: Iterable[Path], model_root: Path) -> list[ImageData]:
    return [embed_photo(Path(p), model_root) for p in paths]


def new_store(path: Path) -> FaceStore:
    store = FaceStore(path)
    store.bind_model(MODEL_PACK, EMBEDDING_DIM)
    return store


def add_photos(store: FaceStore, paths: Sequence[Path], model_root: Path) -> list[ImageData]:
    """Register and embed photos into a store as the ingestion pipeline would."""
    entries = [(str(p.resolve()), sha256_of(p), p.stat().st_size) for p in paths]
    pending, _, _ = store.register_files(entries)
    todo = {sha for _, sha, *_ in pending}
    images = [img for img in embed_photos(paths, model_root) if img.sha256 in todo]
    # Two listed files with the same bytes: the first one is canonical, the rest aliases.
    unique = list({img.sha256: img for img in reversed(images)}.values())[::-1]
    store.add_images(unique)
    return unique


def copy_photos(people: dict[str, list[Path]], dest: Path) -> dict[str, list[Path]]:
    """Copies of the photos under dest/<Person>/ (tests change files; the originals stay)."""
    copied: dict[str, list[Path]] = {}
    for person, photos in people.items():
        folder = dest / person
        folder.mkdir(parents=True, exist_ok=True)
        copied[person] = []
        for photo in photos:
            target = folder / photo.name
            if not target.exists():
                shutil.copyfile(photo, target)
            copied[person].append(target)
    return copied


def lfw_slice(
    lfw: Path, people: Sequence[str], per_person: int, skip: int = 0
) -> dict[str, list[Path]]:
    """Photos skip..skip+per_person (sorted) of each named LFW person."""
    chosen: dict[str, list[Path]] = {}
    for person in people:
        photos = sorted((lfw / person).glob("*.jpg"))[skip : skip + per_person]
        if not photos:
            raise FileNotFoundError(f"no LFW photos for {person} in {lfw}")
        chosen[person] = photos
    return chosen


def variants(photo: Path, folder: Path) -> list[Path]:
    """The same picture re-encoded at quality 60, halved, and cropped 5% off two sides."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    with Image.open(photo) as img:
        w, h = img.size
        edits = {
            "q60": (img, 60),
            "half": (img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 90),
            "crop": (img.crop((round(w * 0.05), round(h * 0.05), w, h)), 90),
        }
        for tag, (edited, quality) in edits.items():
            buffer = io.BytesIO()
            edited.save(buffer, "JPEG", quality=quality)
            target = folder / f"{photo.stem}_{tag}.jpg"
            target.write_bytes(buffer.getvalue())
            made.append(target)
    return made
