"""The face store: one SQLite file (WAL mode) holding images, path aliases, faces and errors."""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 3  # 2: paths.mtime_ns; 3: faces.blur_measure

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    capture_time TEXT NOT NULL DEFAULT '',
    face_count INTEGER NOT NULL DEFAULT 0,
    error_reason TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS paths (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS paths_sha ON paths(sha256);
CREATE TABLE IF NOT EXISTS faces (
    face_id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL REFERENCES images(sha256),
    face_index INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    kps BLOB NOT NULL,
    det_score REAL NOT NULL,
    embedding BLOB,
    face_short REAL NOT NULL,
    blur REAL NOT NULL,
    landmark_2d_106 BLOB,
    landmark_3d_68 BLOB,
    yaw REAL, pitch REAL, roll REAL,
    pose_source INTEGER NOT NULL DEFAULT 0,
    blur_measure INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sha256, face_index)
);
CREATE INDEX IF NOT EXISTS faces_sha ON faces(sha256);
CREATE TABLE IF NOT EXISTS file_errors (
    path TEXT PRIMARY KEY,
    error_reason TEXT NOT NULL,
    error_message TEXT NOT NULL
);
"""


class StoreMismatchError(ValueError):
    """The store holds embeddings of another model than the one offered."""


SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's answers that mean the service's user may not write the store or its folder.
_PERMISSION_ERRORS = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")


class StoreWriteError(OSError):
    """A write to the store failed (a full disk, an I/O error, a read-only file); the
    transaction was rolled back and everything committed before it is kept."""

    def __init__(self, path: Path, error: sqlite3.Error) -> None:
        name = getattr(error, "sqlite_errorname", "")
        self.disk_full = name == "SQLITE_FULL"
        if name.startswith(_PERMISSION_ERRORS) or "readonly" in str(error):
            advice = (
                f"the service's user ({getpass.getuser()}) has no permission to write it: "
                f"SQLite writes the store and, beside it, {path.name}-wal and {path.name}-shm, "
                "so give that user write access to the store and its folder (or name another "
                "store) and run the command again"
            )
        elif self.disk_full:
            advice = "free disk space and run the command again"
        else:
            advice = "fix the disk (or name another store) and run the command again"
        super().__init__(
            f"cannot write the face store {path}: {error}. Everything committed before is "
            f"kept: {advice}"
        )


class StoreProblem(ValueError):
    """The store file cannot be used as it is (deleted or replaced under the service, not a
    facesets store, damaged); the message names it and says what to do."""


def corrupt_store(path: Path | str, error: BaseException) -> StoreProblem:
    return StoreProblem(
        f"the face store {path} is damaged ({error}); nothing was written. See what is wrong "
        f"with `facesets store check {path}`, then restore the store from a backup "
        "(`facesets store backup` makes one) or move it aside and run the command again to "
        "build a new one"
    )


def is_corruption(error: BaseException) -> bool:
    """SQLite's damaged-file answers (as opposed to locks, full disks and permissions)."""
    return isinstance(error, sqlite3.DatabaseError) and (
        getattr(error, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
        or "malformed" in str(error)
        or "not a database" in str(error)
    )


def _file_identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def refuse_foreign_file(path: Path) -> None:
    """An existing file given as a store must be one: it is never turned into one."""
    if path.is_dir():
        raise StoreProblem(
            f"{path} is a folder, not a facesets store; name a file, such as "
            f"{path / 'faces.db'} (the store is created there if no file is)"
        )
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        raise StoreProblem(
            f"{path} is an empty file, not a facesets store; refusing to turn it into one. "
            "Name a path where no file is (the store is created there) or an existing store"
        )
    if header != SQLITE_HEADER:
        raise StoreProblem(
            f"{path} is not a facesets store (not an SQLite database); refusing to change it. "
            "Name a path where no file is (the store is created there) or an existing store"
        )


@dataclass(frozen=True)
class FaceData:
    """One detected face, as inference reports it."""

    bbox: tuple[float, float, float, float]
    kps: np.ndarray  # (5, 2) float32
    det_score: float
    embedding: np.ndarray | None  # (d,) float32
    face_short: float
    blur: float
    landmark_2d_106: np.ndarray | None = None
    landmark_3d_68: np.ndarray | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    pose_source: int = 0
    blur_measure: int = 0  # common_pb2.BlurMeasure of `blur`


@dataclass(frozen=True)
class ImageData:
    """One processed file: its faces, or the error that stopped it."""

    sha256: str
    path: str
    size: int
    width: int = 0
    height: int = 0
    capture_time: str = ""
    faces: Sequence[FaceData] = ()
    error_reason: str = ""
    error_message: str = ""


@dataclass
class ImageRow:
    sha256: str
    path: str
    aliases: list[str]
    size: int
    width: int
    height: int
    capture_time: str
    face_count: int
    error_reason: str
    error_message: str


@dataclass
class FaceTable:
    """All faces of a store as column arrays, in face_id order."""

    face_id: np.ndarray  # (n,) int64
    sha256: list[str]
    face_index: np.ndarray
    bbox: np.ndarray  # (n, 4) float32
    kps: np.ndarray  # (n, 5, 2) float32
    det_score: np.ndarray
    face_short: np.ndarray
    blur: np.ndarray
    yaw: np.ndarray  # NaN where unknown
    pitch: np.ndarray
    roll: np.ndarray
    pose_source: np.ndarray
    blur_measure: np.ndarray  # common_pb2.BlurMeasure of each blur value
    embedding: np.ndarray | None  # (n, d) float32
    landmark_2d_106: list[np.ndarray | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.face_id)


def _blob(array: np.ndarray | None) -> bytes | None:
    return None if array is None else np.ascontiguousarray(array, dtype="<f4").tobytes()


def _array(blob: bytes | None, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    if blob is None:
        return None
    array = np.frombuffer(blob, dtype="<f4")
    return array.reshape(shape) if shape else array


class FaceStore:
    """Thread-safe access to one store file; every write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._identity: tuple[int, int] | None = None  # set once opened; checked at each commit
        if not self.path.exists():
            self._create()
        refuse_foreign_file(self.path)
        self._db = self._connect(self.path)
        try:
            self._open(existed=True)
        except BaseException:
            self._db.close()
            raise
        # The file this connection writes: checked on every call (see check_still_there).
        self._identity = _file_identity(self.path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        try:
            return sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.OperationalError as error:
            raise StoreWriteError(self.path, error) from error

    def _create(self) -> None:
        """A new store appears whole or not at all: its schema is written to a file beside it,
        then linked in place, which never replaces a file. Two commands creating one store at
        once both open the one that won; neither sees a half-made file and calls it foreign."""
        staged = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.new")
        try:
            self._db = self._connect(staged)
            try:
                self._open(existed=False)
            finally:
                self._db.close()  # the last connection: SQLite folds the WAL into the file
            try:
                os.link(staged, self.path)
            except FileExistsError:
                pass  # another command's store, made meanwhile: opened as it is
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.rename(staged, self.path)
        finally:
            for leftover in (staged, *(Path(f"{staged}{end}") for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)

    def _open(self, existed: bool) -> None:
        try:
            if existed:
                self._refuse_foreign_database()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.DatabaseError as error:
            if is_corruption(error):
                raise corrupt_store(self.path, error) from error
            raise StoreWriteError(self.path, error) from error
        try:
            with self._transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._migrate()
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
                # Its identity, whatever path it is opened at (a store made before has one
                # from its first open since).
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,)
                )
        except sqlite3.DatabaseError as error:
            if is_corruption(error):
                raise corrupt_store(self.path, error) from error
            raise

    def _refuse_foreign_database(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        version = (
            self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if "meta" in tables
            else None
        )
        if version is None:
            raise StoreProblem(
                f"{self.path} is an SQLite database but not a facesets store (no facesets "
                "metadata); refusing to change it. Name a path where no file is (the store is "
                "created there) or an existing store"
            )

    def check_still_there(self) -> None:
        """Raise StoreProblem when the file this store writes was deleted or replaced since it
        was opened: SQLite would go on writing into the unlinked file, lost when it closes."""
        if self._identity is None:  # still opening: the file is the one just connected
            return
        try:
            identity = _file_identity(self.path)
        except FileNotFoundError:
            identity = None
        if identity == self._identity:
            return
        what = "deleted or moved away" if identity is None else "replaced by another file"
        raise StoreProblem(
            f"the face store {self.path} was {what} while the clustering service had it open; "
            "nothing more is written to the old file. Run the command again: it opens "
            + (
                "a new store there (restore the old one from a backup first to keep its faces)"
                if identity is None
                else "the file now there"
            )
        )

    def _migrate(self) -> None:
        """Bring a store made by an earlier version up to this schema, in place."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(paths)")}
        if "mtime_ns" not in columns:  # version 1: every path is hashed once more
            self._db.execute("ALTER TABLE paths ADD COLUMN mtime_ns INTEGER NOT NULL DEFAULT 0")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(faces)")}
        if "blur_measure" not in columns:  # version 2: blur of the earlier measure, until enrich
            self._db.execute("ALTER TABLE faces ADD COLUMN blur_measure INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def retire(self) -> None:
        """Close a store whose file was deleted or replaced. Its write-ahead log is emptied
        into the old file first: SQLite keeps the log of an unlinked file on close, and the
        next store opened at this path would replay those pages onto itself."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # closing still releases the old file
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    # --- metadata ----------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock, self.path, self.check_still_there)

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    @property
    def store_id(self) -> str:
        """The id the store was made with, whatever path it is opened at ("" for a store made
        before ids that has not been opened for writing since)."""
        return self.meta().get("store_id", "")

    def bind_model(self, model_pack: str, embedding_dim: int) -> dict[str, str]:
        """Record the model on first use; refuse another model afterwards."""
        with self._transaction():
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if "model_pack" not in meta:
                self._db.execute("INSERT INTO meta VALUES ('model_pack', ?)", (model_pack,))
                self._db.execute(
                    "INSERT INTO meta VALUES ('embedding_dim', ?)", (str(embedding_dim),)
                )
            elif meta["model_pack"] != model_pack or int(meta["embedding_dim"]) != embedding_dim:
                raise StoreMismatchError(
                    f"store {self.path} holds {meta['embedding_dim']}-d embeddings of model pack "
                    f"'{meta['model_pack']}'; refusing {embedding_dim}-d embeddings of "
                    f"'{model_pack}'. Use another store for another model."
                )
        return self.meta()

    # --- registration ------------------------------------------------------------------------
    def register_files(
        self, files: Iterable[tuple[str, str, int] | tuple[str, str, int, int]]
    ) -> tuple[list[tuple[str, str, int, int]], int, int]:
        """Record (path, sha256, size[, mtime_ns]) entries.

        Returns the entries needing inference (one per unknown sha256, as (path, sha256, size,
        mtime_ns): the stamp inference checks before it reads), how many files hold known
        contents, and how many new aliases were recorded.
        """
        pending: dict[str, tuple[str, str, int, int]] = {}
        known = aliases_added = 0
        with self._transaction():
            for path, sha, size, *rest in files:
                mtime_ns = rest[0] if rest else 0
                self._db.execute("DELETE FROM file_errors WHERE path = ?", (path,))
                row = self._db.execute(
                    "SELECT sha256 FROM paths WHERE path = ?", (path,)
                ).fetchone()
                is_new_path = row is None or row[0] != sha
                self._db.execute(
                    "INSERT INTO paths VALUES (?, ?, ?, ?) ON CONFLICT(path) DO UPDATE "
                    "SET sha256 = excluded.sha256, size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns",
                    (path, sha, size, mtime_ns),
                )
                image = self._db.execute(
                    "SELECT path FROM images WHERE sha256 = ?", (sha,)
                ).fetchone()
                if image is None:
                    pending.setdefault(sha, (path, sha, size, mtime_ns))
                    continue
                known += 1
                if is_new_path and image[0] != path:
                    aliases_added += 1
        return list(pending.values()), known, aliases_added

    def photo_under(self, folder: Path) -> str | None:
        """One path of the store's photos inside `folder` (absolute, as paths are stored), or
        None when it holds none: a range of the path index, however large the store."""
        prefix = os.path.join(os.fspath(folder), "")
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # just past every path starting so
        with self._lock:
            row = self._db.execute(
                "SELECT path FROM paths WHERE path >= ? AND path < ? LIMIT 1", (prefix, end)
            ).fetchone()
        return None if row is None else str(row[0])

    def path_records(self, paths: Iterable[str]) -> dict[str, tuple[str, int, int]]:
        """path -> (sha256, size, mtime_ns) as last registered, for the paths it knows."""
        paths = list(paths)
        found: dict[str, tuple[str, int, int]] = {}
        with self._lock:
            for start in range(0, len(paths), 500):  # SQLite's bound-parameter limit
                chunk = paths[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for path, sha, size, mtime_ns in self._db.execute(
                    f"SELECT path, sha256, size, mtime_ns FROM paths WHERE path IN ({marks})",
                    chunk,
                ):
                    found[path] = (sha, size, mtime_ns)
        return found

    def record_file_errors(self, errors: Iterable[tuple[str, str, str]]) -> None:
        """Files that could not be read at all: (path, reason, message). Retried on re-runs."""
        with self._transaction():
            for path, reason, message in errors:
                self._db.execute(
                    "INSERT INTO file_errors VALUES (?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "error_reason = excluded.error_reason, error_message = excluded.error_message",
                    (path, reason, message),
                )

    def file_errors(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT path, error_reason, error_message FROM file_errors ORDER BY path"
            ).fetchall()

    def known_content(self, digests: Iterable[str]) -> set[str]:
        digests = list(digests)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(digests), 500):
                chunk = digests[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT sha256 FROM images WHERE sha256 IN ({marks})", chunk
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    # --- ingestion ---------------------------------------------------------------------------
    def add_images(self, images: Sequence[ImageData]) -> list[str]:
        """Store processed images in one transaction; an image already stored is skipped.

        Returns the sha256 of every image now stored (new or already there).
        """
        dim = self.meta().get("embedding_dim")
        with self._transaction():
            for image in images:
                exists = self._db.execute(
                    "SELECT 1 FROM images WHERE sha256 = ?", (image.sha256,)
                ).fetchone()
                if exists:
                    continue
                self._db.execute(
                    "INSERT INTO images (sha256, path, size, width, height, capture_time, "
                    "face_count, error_reason, error_message, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        image.sha256,
                        image.path,
                        image.size,
                        image.width,
                        image.height,
                        image.capture_time,
                        len(image.faces),
                        image.error_reason,
                        image.error_message,
                        time.time(),
                    ),
                )
                # The modification time registration recorded holds while the content does.
                self._db.execute(
                    "INSERT INTO paths (path, sha256, size) VALUES (?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, "
                    "size = excluded.size, mtime_ns = CASE WHEN paths.sha256 = excluded.sha256 "
                    "THEN paths.mtime_ns ELSE 0 END",
                    (image.path, image.sha256, image.size),
                )
                for index, face in enumerate(image.faces):
                    if face.embedding is not None and dim and face.embedding.size != int(dim):
                        raise StoreMismatchError(
                            f"a {face.embedding.size}-d embedding cannot join a store of "
                            f"{dim}-d embeddings ({self.path})"
                        )
                    self._insert_face(image.sha256, index, face)
        return [image.sha256 for image in images]

    def _insert_face(self, sha: str, index: int, face: FaceData) -> None:
        x1, y1, x2, y2 = (float(v) for v in face.bbox)
        self._db.execute(
            "INSERT INTO faces (sha256, face_index, x1, y1, x2, y2, kps, det_score, embedding, "
            "face_short, blur, landmark_2d_106, landmark_3d_68, yaw, pitch, roll, pose_source, "
            "blur_measure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sha,
                index,
                x1,
                y1,
                x2,
                y2,
                _blob(face.kps),
                float(face.det_score),
                _blob(face.embedding),
                float(face.face_short),
                float(face.blur),
                _blob(face.landmark_2d_106),
                _blob(face.landmark_3d_68),
                face.yaw,
                face.pitch,
                face.roll,
                int(face.pose_source),
                int(face.blur_measure),
            ),
        )

    def update_faces(self, updates: Iterable[tuple[int, FaceData]]) -> int:
        """Write landmarks, pose and sharpness found later for existing faces.

        A sharpness replaces the stored one unless it is of an earlier measure than it.
        """
        count = 0
        with self._transaction():
            for face_id, face in updates:
                cursor = self._db.execute(
                    "UPDATE faces SET landmark_2d_106 = COALESCE(?, landmark_2d_106), "
                    "landmark_3d_68 = COALESCE(?, landmark_3d_68), yaw = ?, pitch = ?, roll = ?, "
                    "pose_source = ?, blur = CASE WHEN ? >= blur_measure THEN ? ELSE blur END, "
                    "blur_measure = MAX(blur_measure, ?) WHERE face_id = ?",
                    (
                        _blob(face.landmark_2d_106),
                        _blob(face.landmark_3d_68),
                        face.yaw,
                        face.pitch,
                        face.roll,
                        int(face.pose_source),
                        int(face.blur_measure),
                        float(face.blur),
                        int(face.blur_measure),
                        face_id,
                    ),
                )
                count += cursor.rowcount
        return count

    # --- reading -----------------------------------------------------------------------------
    def aliases(self) -> dict[str, list[str]]:
        """sha256 -> every path with those bytes other than the canonical one."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.sha256, p.path FROM paths p JOIN images i ON i.sha256 = p.sha256 "
                "WHERE p.path != i.path ORDER BY p.path"
            ).fetchall()
        found: dict[str, list[str]] = {}
        for sha, path in rows:
            found.setdefault(sha, []).append(path)
        return found

    def images(self) -> list[ImageRow]:
        aliases = self.aliases()
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256, path, size, width, height, capture_time, face_count, "
                "error_reason, error_message FROM images ORDER BY path"
            ).fetchall()
        return [
            ImageRow(r[0], r[1], aliases.get(r[0], []), r[2], r[3], r[4], r[5], r[6], r[7], r[8])
            for r in rows
        ]

    def iter_face_rows(
        self, with_embeddings: bool = True, face_ids: Sequence[int] = ()
    ) -> Iterator[sqlite3.Row]:
        columns = (
            "f.face_id, f.sha256, f.face_index, f.x1, f.y1, f.x2, f.y2, f.kps, f.det_score, "
            "f.face_short, f.blur, f.landmark_2d_106, f.landmark_3d_68, f.yaw, f.pitch, f.roll, "
            "f.pose_source, f.blur_measure, i.path, i.width, i.height"
        )
        if with_embeddings:
            columns += ", f.embedding"
        query = f"SELECT {columns} FROM faces f JOIN images i ON i.sha256 = f.sha256"
        with self._lock:
            cursor = self._db.cursor()
            cursor.row_factory = sqlite3.Row  # type: ignore[assignment]  # typeshed types it as a function; Row is the documented factory
            if face_ids:
                rows: list[sqlite3.Row] = []
                ids = list(face_ids)
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    rows += cursor.execute(
                        f"{query} WHERE f.face_id IN ({','.join('?' * len(chunk))})", chunk
                    ).fetchall()
                rows.sort(key=lambda r: r["face_id"])
            else:
                rows = cursor.execute(f"{query} ORDER BY f.face_id").fetchall()
        yield from rows

    def face_table(self, with_embeddings: bool = True) -> FaceTable:
        rows = list(self.iter_face_rows(with_embeddings))
        n = len(rows)

        def col(name: str, dtype: str = "f4") -> np.ndarray:
            return np.array(
                [np.nan if r[name] is None else r[name] for r in rows], dtype=dtype
            ).reshape(n)

        embedding = None
        if with_embeddings:
            dim = int(self.meta().get("embedding_dim", 0) or 0)
            embedding = np.zeros((n, dim), dtype=np.float32)
            for i, r in enumerate(rows):
                if r["embedding"] is not None:
                    embedding[i] = _array(r["embedding"])
        return FaceTable(
            face_id=col("face_id", "i8"),
            sha256=[r["sha256"] for r in rows],
            face_index=col("face_index", "i4"),
            bbox=np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], "f4").reshape(n, 4),
            kps=np.array([_array(r["kps"], (5, 2)) for r in rows], "f4").reshape(n, 5, 2),
            det_score=col("det_score"),
            face_short=col("face_short"),
            blur=col("blur"),
            yaw=col("yaw"),
            pitch=col("pitch"),
            roll=col("roll"),
            pose_source=col("pose_source", "i4"),
            blur_measure=col("blur_measure", "i4"),
            embedding=embedding,
            landmark_2d_106=[_array(r["landmark_2d_106"], (106, 2)) for r in rows],
        )

    def stats(self) -> dict[str, object]:
        with self._lock:
            images = self._db.execute(
                "SELECT COUNT(*) FROM images WHERE error_reason = ''"
            ).fetchone()[0]
            faces = self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
            no_faces = self._db.execute(
                "SELECT COUNT(*) FROM images WHERE error_reason = '' AND face_count = 0"
            ).fetchone()[0]
            errors: dict[str, int] = {}
            for reason, count in self._db.execute(
                "SELECT error_reason, COUNT(*) FROM images WHERE error_reason != '' "
                "GROUP BY error_reason UNION ALL "
                "SELECT error_reason, COUNT(*) FROM file_errors GROUP BY error_reason"
            ).fetchall():
                errors[reason] = errors.get(reason, 0) + count
        meta = self.meta()
        return {
            "images": images,
            "faces": faces,
            "images_without_faces": no_faces,
            "aliases": sum(len(v) for v in self.aliases().values()),
            "errors_by_reason": errors,
            "model_pack": meta.get("model_pack", ""),
            "embedding_dim": int(meta.get("embedding_dim", 0) or 0),
        }


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock; ROLLBACK on any error.

    SQLite's operational errors (disk full, I/O error, read-only file) become
    StoreWriteError, which names the store and what to do. Just before COMMIT the store file's
    identity is checked (`check`): a store renamed over or deleted while a stream writes is
    rolled back with StoreProblem instead of committing into a file no one can see.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.RLock,
        path: Path,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._lock = lock
        self._path = path
        self._check = check

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            self._lock.release()
            raise StoreWriteError(self._path, error) from error
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            failure = exc if isinstance(exc, sqlite3.OperationalError) else None
            if exc is None:
                try:
                    self._check()
                except BaseException:
                    self._db.execute("ROLLBACK")
                    # Empty the old file's log into it (as FaceStore.retire does): left beside
                    # the file now at the path, it would replay onto that file when opened.
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    raise
                try:
                    self._db.execute("COMMIT")
                    return
                except sqlite3.OperationalError as error:  # SQLITE_FULL leaves it open
                    failure = error
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    if failure is None:
                        raise
            if failure is not None:
                raise StoreWriteError(self._path, failure) from failure
        finally:
            self._lock.release()
