"""state.json (every asset's outcome) and queue.json (what the embed step should embed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facesets.contract import layout

STATE_VERSION = 1

# One asset's outcome in state.json: scalars only (status, reason, paths, sizes, checksums).
# An asset's recorded outcome: scalars, and the faces Immich found on it (a list of objects).
AssetRecord = dict[str, Any]

# Outcomes recorded in state.json.
STAGED = "staged"
SKIPPED = "skipped"
ERROR = "error"
NO_FACE = "no_face"
NO_BIG_FACE = "no_big_face"
EXCLUDED = "excluded"
PARTNER = "partner"  # a partner's asset, shared into this user's timeline
DUPLICATE = "duplicate"  # same bytes as another asset of this library
IN_STORE = "in_store"  # same bytes as a photo the face store already holds


class StateBook:
    """state.json (every asset's outcome) and queue.json (what to embed), saved atomically at
    most every `interval_s` while staging and on every way out."""

    def __init__(self, user_dir: Path, user: str, server: str, interval_s: float) -> None:
        self.user_dir = user_dir
        self.state_path = user_dir / layout.IMMICH_STATE
        self.queue_path = user_dir / layout.IMMICH_QUEUE
        self.user = user
        self.server = server
        self.interval_s = interval_s
        self.lock = threading.RLock()
        self.records: dict[str, AssetRecord] = {}
        # Immich's people (id -> name, is_hidden, birth_date), read anew by every run.
        self.people: dict[str, Mapping[str, object]] = {}
        self._saved_at = time.monotonic()
        self._gap = interval_s

    def load(self) -> None:
        data = layout.read_json(self.state_path, default=None)
        if data is None:
            return
        if not isinstance(data, dict) or not isinstance(data.get("assets"), dict):
            raise ValueError(f"{self.state_path} is not a staging state file")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path} has state version {data.get('version')!r}")
        self.records = {str(k): _record(v, self.state_path) for k, v in data["assets"].items()}
        people = data.get("people")
        self.people = (
            {str(k): _record(v, self.state_path) for k, v in people.items()}
            if isinstance(people, dict)
            else {}
        )

    def get(self, asset_id: str) -> AssetRecord | None:
        with self.lock:
            return self.records.get(asset_id)

    def put(self, asset_id: str, record: AssetRecord) -> None:
        with self.lock:
            self.records[asset_id] = record
            if time.monotonic() - self._saved_at >= self._gap:
                self.save()

    def save(self) -> None:
        with self.lock:
            started = time.monotonic()
            layout.atomic_write_json(
                self.state_path,
                {
                    "version": STATE_VERSION,
                    "user": self.user,
                    "server": self.server,
                    "people": self.people,
                    "assets": self.records,
                },
            )
            items = sorted(
                (
                    {
                        "asset_id": asset_id,
                        "path": record["path"],
                        "sha256": record["sha256"],
                        "size": record["size"],
                        "original_path": record["original_path"],
                    }
                    for asset_id, record in self.records.items()
                    if record.get("status") == STAGED
                ),
                key=lambda item: item["path"],
            )
            layout.atomic_write_json(
                self.queue_path,
                {
                    "version": STATE_VERSION,
                    "user": self.user,
                    "root": str(self.user_dir.resolve()),
                    "items": items,
                },
            )
            now = time.monotonic()
            # A big library makes each save slow: space saves so they stay a small share.
            self._gap = max(self.interval_s, 10 * (now - started))
            self._saved_at = now


def lacks_faces(record: AssetRecord | None) -> bool:
    """A staged asset recorded before faces (with their people) were kept: its faces are read
    again, the photo is not downloaded again."""
    return record is not None and record.get("status") == STAGED and "faces" not in record


def _record(raw: object, where: Path) -> AssetRecord:
    """One recorded outcome (an asset's, or a person's), checked: a JSON object."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} holds a record that is not an object: {raw!r}")
    return {str(k): v for k, v in raw.items()}


def is_done(record: AssetRecord | None, min_face_short: float) -> bool:
    """Whether an earlier outcome still holds; errors and exclusions are decided anew, a
    'no big face' only holds while the threshold is not lowered, and a 'no face' on a recent
    upload is asked again (Immich may not have looked for faces yet)."""
    if record is None or record.get("status") == ERROR:
        return False
    if record.get("reason") == EXCLUDED:
        return False
    if record.get("reason") == NO_BIG_FACE:
        return float(record.get("min_face_short", 0.0)) <= min_face_short
    if record.get("reason") == NO_FACE and record.get("recheck"):
        return False
    return record.get("status") in (STAGED, SKIPPED)
