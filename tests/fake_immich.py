"""A faithful fake Immich server for tests and benchmarks.

It follows the contract of @immich/sdk 2.7.5 for the endpoints the stager uses, under `/api`:
GET /server/ping (public), GET /users/me, POST /search/metadata, GET /faces?id=, GET /people
(withHidden, page, size), GET /assets/{id}/original. Everything but ping needs the `x-api-key`
header; a missing or wrong key gets Immich's 401 JSON error. Shapes and field names are those
of the SDK's DTOs: search pages carry `nextPage` as the next page number in a string, or null,
and `total` / `count` count the page (as Immich's SearchService does); a search returns the
user's assets and those of partners sharing their timeline; external-library assets carry
Immich's path-based checksum (SHA-1 of "path:" + originalPath), uploaded ones the SHA-1 of
their bytes.

Faces are reported the way Immich stores them: detected on the preview, whose short edge is
`preview_size` unless the original is smaller (sharp's `fit: outside` without enlargement), so
a box is in the preview's pixel space (imageWidth x imageHeight) and a client must scale it.
LFW photos get `LFW_FACE_BOX`, the labelled face measured once with the mini pack's SCRFD
detector: the mean box of the face nearest the centre over 40 random LFW photos.

People: every face of an asset names the Immich person it belongs to (`FakeAsset.person`, a
key, for its first face, or `FakeAsset.people` for each face). A key gets a person whose id is
derived from it, unnamed (Immich's "") unless `FakeImmich.people` says otherwise; renaming is
`fake.people[key].name = ...` between runs. Shapes checked against immich-app/immich
server/src/dtos/person.dto.ts at commit 003b40b8 (PersonResponseDto, AssetFaceResponseDto,
PeopleResponseDto {total, hidden, people, hasNextPage}, PersonSearchDto page/size <= 1000).

Faults, set on `server.faults` at any time: an outage (every request answered 503, or
connections refused, from the Nth request on until `end_outage()`), intermittent 500s and 429s
with Retry-After, truncated downloads (full Content-Length, half the body, connection closed),
per-request latency. Counters per endpoint and per asset let tests check that nothing was
fetched twice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image

NAMESPACE = uuid.UUID("5b0f3a52-6a0c-4d8e-9a57-3f1c2b7f0e11")
OWNER_ID = str(uuid.uuid5(NAMESPACE, "user:admin"))
PARTNER_ID = str(uuid.uuid5(NAMESPACE, "user:partner"))
LIBRARY_ID = str(uuid.uuid5(NAMESPACE, "library:nas"))
UPLOAD_ROOT = "/usr/src/app/upload"
LIBRARY_PREFIX = f"{UPLOAD_ROOT}/library/admin/2019"
LFW_SIZE = 250
LFW_FACE_BOX = (79.0, 62.0, 179.0, 196.0)  # x1, y1, x2, y2 in a 250x250 LFW photo
IMMICH_PREVIEW_SIZE = 1440  # Immich's default preview size
_BASE_TIME = datetime(2019, 6, 1, 12, 0, 0, tzinfo=UTC)

Box = tuple[float, float, float, float]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakeAsset:
    """One asset: its bytes, and its faces in the original's pixels."""

    original_path: str
    data: bytes
    width: int
    height: int
    faces: list[Box] = field(default_factory=list)
    person: str | None = None  # the Immich person (a key) of the first face
    people: list[str | None] | None = None  # one person key per face; overrides `person`
    type: str = "IMAGE"
    owner_id: str = OWNER_ID
    library_id: str | None = None  # external library: path-based checksum
    report_size: bool = True  # width/height and EXIF dimensions known to the server
    mime: str = "image/jpeg"
    taken: datetime = _BASE_TIME
    uploaded: datetime | None = None  # createdAt; the capture time when not given
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = str(uuid.uuid5(NAMESPACE, "asset:" + self.original_path))

    @property
    def file_name(self) -> str:
        return self.original_path.rsplit("/", 1)[-1]

    @property
    def checksum(self) -> str:
        if self.library_id is not None:
            digest = hashlib.sha1(f"path:{self.original_path}".encode()).digest()
        else:
            digest = hashlib.sha1(self.data).digest()
        return base64.b64encode(digest).decode("ascii")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def copy_as(self, original_path: str, **changes: Any) -> FakeAsset:
        """The same bytes under another path (and so another id)."""
        values = {
            "original_path": original_path,
            "data": self.data,
            "width": self.width,
            "height": self.height,
            "faces": list(self.faces),
            "person": self.person,
            "people": self.people,
            "taken": self.taken,
            "mime": self.mime,
        }
        values.update(changes)
        return FakeAsset(**values)


# --- asset builders ----------------------------------------------------------------------------
def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def lfw_asset(
    photo: Path,
    *,
    index: int = 0,
    scale: float = 1.0,
    faces: Sequence[Box] | None = None,
    prefix: str = LIBRARY_PREFIX,
    **changes: Any,
) -> FakeAsset:
    """An LFW photo as an asset at `<prefix>/<Person>/<file>`; `scale` re-encodes it resized,
    its face box scaled alike. `faces` (250x250 coordinates) replaces the labelled face."""
    person = photo.parent.name
    boxes = list(faces) if faces is not None else [LFW_FACE_BOX]
    if scale == 1.0:
        data, size = photo.read_bytes(), LFW_SIZE
    else:
        size = round(LFW_SIZE * scale)
        with Image.open(photo) as image:
            data = _jpeg(image.resize((size, size), Image.Resampling.LANCZOS))
    factor = size / LFW_SIZE
    values: dict[str, Any] = {
        "original_path": f"{prefix}/{person}/{photo.name}",
        "data": data,
        "width": size,
        "height": size,
        "faces": [tuple(v * factor for v in box) for box in boxes],
        "person": person if boxes else None,
        "taken": _BASE_TIME + timedelta(minutes=index),
    }
    values.update(changes)
    return FakeAsset(**values)


def lfw_pair_asset(left: Path, right: Path, *, index: int = 0, **changes: Any) -> FakeAsset:
    """Two LFW photos side by side (500x250): two faces in one photo, boxed as Immich would."""
    with Image.open(left) as first, Image.open(right) as second:
        both = Image.new("RGB", (2 * LFW_SIZE, LFW_SIZE))
        both.paste(first.convert("RGB"), (0, 0))
        both.paste(second.convert("RGB"), (LFW_SIZE, 0))
    x1, y1, x2, y2 = LFW_FACE_BOX
    values: dict[str, Any] = {
        "original_path": f"{LIBRARY_PREFIX}/{left.parent.name}/pair_{left.stem}_{right.stem}.jpg",
        "data": _jpeg(both),
        "width": 2 * LFW_SIZE,
        "height": LFW_SIZE,
        "faces": [LFW_FACE_BOX, (x1 + LFW_SIZE, y1, x2 + LFW_SIZE, y2)],
        "taken": _BASE_TIME + timedelta(minutes=index),
    }
    values.update(changes)
    return FakeAsset(**values)


def scenery_asset(name: str, *, index: int = 0, size: tuple[int, int] = (320, 240)) -> FakeAsset:
    """A photo without a face: a smooth colour gradient."""
    width, height = size
    ramp = Image.linear_gradient("L")
    image = Image.merge("RGB", (ramp, ramp.rotate(90), ramp.rotate(180))).resize((width, height))
    return FakeAsset(
        original_path=f"{LIBRARY_PREFIX}/scenery/{name}",
        data=_jpeg(image),
        width=width,
        height=height,
        faces=[],
        taken=_BASE_TIME + timedelta(minutes=index),
    )


def lfw_library(photos: Iterable[Path], start: int = 0) -> list[FakeAsset]:
    return [lfw_asset(photo, index=start + i) for i, photo in enumerate(photos)]


# --- faults and counters -----------------------------------------------------------------------
@dataclass
class FakePerson:
    """One Immich person; `name` "" is an unnamed one, as Immich lists them."""

    key: str
    name: str = ""
    is_hidden: bool = False
    birth_date: str | None = None

    @property
    def id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, "person:" + self.key))


@dataclass
class Faults:
    latency_s: float = 0.0  # every request waits this long first
    # Requests handled at once (0: no limit); the rest queue, as behind a server's small
    # worker pool. The latency is spent holding a slot.
    max_concurrent: int = 0
    error_every: int = 0  # every Nth request (search, faces, original) answers 500
    rate_limit_every: int = 0  # every Nth request (search, faces, original) answers 429
    retry_after: str = "1"  # the 429's Retry-After header
    truncate: dict[str, int] = field(default_factory=dict)  # asset id -> cut downloads left
    outage_from: int | None = None  # request ordinal from which the server is down
    outage_mode: str = "503"  # "503": a proxy answering for a dead server; "refuse": no server


@dataclass(frozen=True)
class RequestRecord:
    started: float  # time.monotonic()
    ordinal: int
    endpoint: str
    asset_id: str | None
    status: int  # 0: connection dropped without an answer


class FakeImmich:
    """The server; a context manager that starts it on 127.0.0.1 at a free port."""

    def __init__(
        self,
        assets: Sequence[FakeAsset],
        api_key: str,
        *,
        storage_label: str | None = "admin",
        preview_size: int = IMMICH_PREVIEW_SIZE,
        partner_timeline: bool = True,
        faults: Faults | None = None,
        people: Sequence[FakePerson] = (),
    ) -> None:
        self.assets = {asset.id: asset for asset in assets}
        self.people = {person.key: person for person in people}
        if len(self.assets) != len(assets):
            raise ValueError("two fake assets share an id")
        self.api_key = api_key
        self.storage_label = storage_label
        self.preview_size = preview_size
        self.partner_timeline = partner_timeline
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.faces_requests: Counter[str] = Counter()
        self.original_requests: Counter[str] = Counter()
        self.originals_served: Counter[str] = Counter()  # complete bodies only
        self.statuses: Counter[int] = Counter()
        self.log: list[RequestRecord] = []
        self._ordinal = 0
        self._slots: threading.BoundedSemaphore | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server address, as a user would put it in IMMICH_URL (without /api)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeImmich:
        self._listen()
        return self

    def stop(self) -> None:
        self._close_listener()

    def __enter__(self) -> FakeImmich:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="fake-immich", daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # --- faults ------------------------------------------------------------------------------
    def start_outage(self, after: int = 0, mode: str = "503") -> None:
        """The server goes down once `after` more requests have been answered."""
        if mode not in ("503", "refuse"):
            raise ValueError(mode)
        with self.lock:
            self.faults.outage_mode = mode
            self.faults.outage_from = self._ordinal + after + 1

    def end_outage(self) -> None:
        with self.lock:
            mode, self.faults.outage_from = self.faults.outage_mode, None
        if mode == "refuse" and self._server is None:
            self._listen()  # same port: clients come back to the same address

    def _down(self) -> None:
        """Refuse mode: stop listening (from a helper thread: shutdown waits for the loop)."""
        with self.lock:
            server, self._server = self._server, None
        if server is not None:

            def close() -> None:
                server.shutdown()
                server.socket.close()

            threading.Thread(target=close, daemon=True).start()

    def slots(self) -> threading.BoundedSemaphore | None:
        """The request slots when faults.max_concurrent limits them."""
        with self.lock:
            if self.faults.max_concurrent and self._slots is None:
                self._slots = threading.BoundedSemaphore(self.faults.max_concurrent)
            return self._slots if self.faults.max_concurrent else None

    # --- bookkeeping ---------------------------------------------------------------------------
    def next_ordinal(self) -> int:
        with self.lock:
            self._ordinal += 1
            return self._ordinal

    def record(
        self, started: float, ordinal: int, endpoint: str, asset_id: str | None, status: int
    ) -> None:
        with self.lock:
            self.requests[endpoint] += 1
            self.statuses[status] += 1
            if endpoint == "faces" and asset_id:
                self.faces_requests[asset_id] += 1
            if endpoint == "original" and asset_id:
                self.original_requests[asset_id] += 1
            self.log.append(RequestRecord(started, ordinal, endpoint, asset_id, status))

    def served(self, asset_id: str) -> None:
        with self.lock:
            self.originals_served[asset_id] += 1

    def take_truncation(self, asset_id: str) -> bool:
        with self.lock:
            left = self.faults.truncate.get(asset_id, 0)
            if left > 0:
                self.faults.truncate[asset_id] = left - 1
            return left > 0

    # --- DTOs ----------------------------------------------------------------------------------
    def user_json(self) -> dict[str, Any]:
        return {
            "id": OWNER_ID,
            "email": "admin@example.com",
            "name": "admin",
            "storageLabel": self.storage_label,
            "avatarColor": "primary",
            "createdAt": _iso(_BASE_TIME),
            "updatedAt": _iso(_BASE_TIME),
            "deletedAt": None,
            "isAdmin": True,
            "license": None,
            "oauthId": "",
            "profileChangedAt": _iso(_BASE_TIME),
            "profileImagePath": "",
            "quotaSizeInBytes": None,
            "quotaUsageInBytes": None,
            "shouldChangePassword": False,
            "status": "active",
        }

    def preview_scale(self, asset: FakeAsset) -> float:
        return min(1.0, self.preview_size / min(asset.width, asset.height))

    def asset_json(self, asset: FakeAsset, with_exif: bool) -> dict[str, Any]:
        taken = _iso(asset.taken)
        data: dict[str, Any] = {
            "id": asset.id,
            "deviceAssetId": asset.file_name.replace(" ", ""),
            "deviceId": "Library Import" if asset.library_id else "CLI",
            "ownerId": asset.owner_id,
            "libraryId": asset.library_id,
            "type": asset.type,
            "originalPath": asset.original_path,
            "originalFileName": asset.file_name,
            "originalMimeType": asset.mime,
            "thumbhash": base64.b64encode(hashlib.md5(asset.data).digest()[:8]).decode(),
            "fileCreatedAt": taken,
            "fileModifiedAt": taken,
            "localDateTime": taken,
            "createdAt": _iso(asset.uploaded or asset.taken),
            "updatedAt": _iso(asset.uploaded or asset.taken),
            "isFavorite": False,
            "isArchived": False,
            "isTrashed": False,
            "isOffline": False,
            "isEdited": False,
            "visibility": "timeline",
            "hasMetadata": True,
            "duration": "0:00:00.00000",
            "checksum": asset.checksum,
            "livePhotoVideoId": None,
            "duplicateId": None,
            "stack": None,
            "resized": True,
            "width": asset.width if asset.report_size else None,
            "height": asset.height if asset.report_size else None,
        }
        if with_exif:
            data["exifInfo"] = {
                "make": "Canon",
                "model": "EOS 5D",
                "exifImageWidth": asset.width if asset.report_size else None,
                "exifImageHeight": asset.height if asset.report_size else None,
                "fileSizeInByte": len(asset.data),
                "orientation": "1",
                "dateTimeOriginal": taken,
                "modifyDate": taken,
                "timeZone": "UTC",
                "lensModel": None,
                "fNumber": 4.0,
                "focalLength": 50.0,
                "iso": 200,
                "exposureTime": "1/125",
                "latitude": None,
                "longitude": None,
                "city": None,
                "state": None,
                "country": None,
                "description": "",
                "projectionType": None,
                "rating": None,
            }
        return data

    def person_of(self, key: str) -> FakePerson:
        with self.lock:
            return self.people.setdefault(key, FakePerson(key))

    def person_json(self, person: FakePerson) -> dict[str, Any]:
        """PersonResponseDto."""
        return {
            "id": person.id,
            "name": person.name,
            "birthDate": person.birth_date,
            "thumbnailPath": f"{UPLOAD_ROOT}/thumbs/{OWNER_ID}/{person.id}.jpeg",
            "isHidden": person.is_hidden,
            "isFavorite": False,
            "updatedAt": _iso(_BASE_TIME),
        }

    def face_keys(self, asset: FakeAsset) -> list[str | None]:
        if asset.people is not None:
            return [*asset.people, *[None] * (len(asset.faces) - len(asset.people))]
        return [asset.person if i == 0 else None for i in range(len(asset.faces))]

    def people_json(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """GET /people: the owner's people with at least one face, named ones first (as
        Immich orders them), `withHidden` or not, paged by `page` and `size` (1..1000)."""
        try:
            page = int((query.get("page") or ["1"])[0])
            size = int((query.get("size") or ["500"])[0])
        except ValueError:
            return 400, _bad_request("page and size must be integers")
        if page < 1 or not 1 <= size <= 1000:
            return 400, _bad_request("size must not be greater than 1000")
        with_hidden = (query.get("withHidden") or ["false"])[0] == "true"
        keys = {
            key
            for asset in self.assets.values()
            if asset.owner_id == OWNER_ID
            for key in self.face_keys(asset)
            if key
        }
        people = sorted(
            (self.person_of(key) for key in keys),
            key=lambda p: (p.is_hidden, not p.name, p.name, p.id),
        )
        hidden = sum(1 for p in people if p.is_hidden)
        listed = [p for p in people if with_hidden or not p.is_hidden]
        start = (page - 1) * size
        return 200, {
            "total": len(people),
            "hidden": hidden,
            "people": [self.person_json(p) for p in listed[start : start + size]],
            "hasNextPage": len(listed) > start + size,
        }

    def faces_json(self, asset: FakeAsset) -> list[dict[str, Any]]:
        scale = self.preview_scale(asset)
        width, height = round(asset.width * scale), round(asset.height * scale)
        faces = []
        for index, (box, key) in enumerate(zip(asset.faces, self.face_keys(asset), strict=True)):
            x1, y1, x2, y2 = (round(v * scale) for v in box)
            person = self.person_json(self.person_of(key)) if key else None
            faces.append(
                {
                    "id": str(uuid.uuid5(NAMESPACE, f"face:{asset.id}:{index}")),
                    "imageWidth": width,
                    "imageHeight": height,
                    "boundingBoxX1": x1,
                    "boundingBoxY1": y1,
                    "boundingBoxX2": x2,
                    "boundingBoxY2": y2,
                    "person": person,
                    "sourceType": "machine-learning",
                }
            )
        return faces

    def search(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        page, size = body.get("page", 1), body.get("size", 250)
        errors = []
        if not isinstance(page, int) or page < 1:
            errors.append("page must not be less than 1")
        if not isinstance(size, int) or not 1 <= size <= 1000:
            errors.append("size must be an integer between 1 and 1000")
        if errors:
            return 400, {"message": errors, "error": "Bad Request", "statusCode": 400}
        owners = {OWNER_ID, PARTNER_ID} if self.partner_timeline else {OWNER_ID}
        wanted_type = body.get("type")
        matches = [
            a
            for a in self.assets.values()
            if a.owner_id in owners and (wanted_type is None or a.type == wanted_type)
        ]
        reverse = body.get("order", "desc") != "asc"
        matches.sort(key=lambda a: (a.taken, a.id), reverse=reverse)
        start = (page - 1) * size
        items = matches[start : start + size]
        has_next = len(matches) > start + size
        with_exif = bool(body.get("withExif"))
        return 200, {
            "albums": {"total": 0, "count": 0, "items": [], "facets": []},
            "assets": {
                "total": len(items),
                "count": len(items),
                "items": [self.asset_json(a, with_exif) for a in items],
                "facets": [],
                "nextPage": str(page + 1) if has_next else None,
            },
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeImmich
    protocol_version = "HTTP/1.1"  # keep-alive, as behind any real deployment
    disable_nagle_algorithm = True  # as Node does: headers and body go out without delay

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # --- dispatch ----------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        fake = self.fake
        started = time.monotonic()
        ordinal = fake.next_ordinal()
        parts = urlsplit(self.path)
        path = parts.path
        endpoint, asset_id = _route(method, path, parse_qs(parts.query))
        body = self._read_body()
        slots = fake.slots()
        if slots is not None:
            with slots:
                self._serve(fake, started, ordinal, endpoint, asset_id, body, path)
        else:
            self._serve(fake, started, ordinal, endpoint, asset_id, body, path)

    def _serve(
        self,
        fake: FakeImmich,
        started: float,
        ordinal: int,
        endpoint: str,
        asset_id: str | None,
        body: bytes,
        path: str,
    ) -> None:
        faults = fake.faults
        if faults.latency_s:
            time.sleep(faults.latency_s)

        def done(status: int) -> None:
            fake.record(started, ordinal, endpoint, asset_id, status)

        if faults.outage_from is not None and ordinal >= faults.outage_from:
            if faults.outage_mode == "refuse":
                fake._down()
                self.close_connection = True  # drop without an answer
                done(0)
                return
            self._json(503, {"message": "Service Unavailable", "statusCode": 503})
            done(503)
            return
        if endpoint != "ping":
            key = self.headers.get("x-api-key")
            if key != fake.api_key:
                message = "Authentication required" if key is None else "Invalid API key"
                self._json(401, {"message": message, "error": "Unauthorized", "statusCode": 401})
                done(401)
                return
        if endpoint in ("search", "faces", "people", "original"):
            if faults.error_every and ordinal % faults.error_every == 0:
                self._json(500, {"message": "Internal server error", "statusCode": 500})
                done(500)
                return
            if faults.rate_limit_every and ordinal % faults.rate_limit_every == 0:
                self._json(
                    429,
                    {"message": "Too Many Requests", "statusCode": 429},
                    {"Retry-After": faults.retry_after},
                )
                done(429)
                return
        status = self._answer(endpoint, asset_id, body, path)
        done(status)

    def _answer(self, endpoint: str, asset_id: str | None, body: bytes, path: str) -> int:
        fake = self.fake
        if endpoint == "ping":
            return self._json(200, {"res": "pong"})
        if endpoint == "me":
            return self._json(200, fake.user_json())
        if endpoint == "search":
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                return self._json(400, {"message": "Bad JSON", "statusCode": 400})
            status, payload = fake.search(request if isinstance(request, dict) else {})
            return self._json(status, payload)
        asset = fake.assets.get(asset_id or "")
        visible = asset is not None and (
            asset.owner_id == OWNER_ID or (fake.partner_timeline and asset.owner_id == PARTNER_ID)
        )
        if endpoint == "people":
            status, payload = fake.people_json(parse_qs(urlsplit(self.path).query))
            return self._json(status, payload)
        if endpoint == "faces":
            if asset is None or asset.owner_id != OWNER_ID:
                return self._json(
                    400,
                    _bad_request("Not found or no face.read access"),
                )
            return self._json(200, fake.faces_json(asset))
        if endpoint == "original":
            if asset is None or not visible:
                return self._json(
                    400,
                    _bad_request("Not found or no asset.download access"),
                )
            return self._original(asset)
        return self._json(
            404,
            {"message": f"Cannot {self.command} {path}", "error": "Not Found", "statusCode": 404},
        )

    def _original(self, asset: FakeAsset) -> int:
        truncated = self.fake.take_truncation(asset.id)
        self.send_response(200)
        self.send_header("Content-Type", asset.mime)
        self.send_header("Content-Length", str(len(asset.data)))
        self.send_header("Cache-Control", "private, max-age=86400, no-transform")
        disposition = f"inline; filename*=UTF-8''{quote(asset.file_name)}"
        self.send_header("Content-Disposition", disposition)
        self.end_headers()
        if truncated:
            self.wfile.write(asset.data[: len(asset.data) // 2])
            self.wfile.flush()
            self.close_connection = True  # the rest never comes
            return 200
        self.wfile.write(asset.data)
        self.fake.served(asset.id)
        return 200

    # --- plumbing ----------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> int:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        return status


def _bad_request(message: str) -> dict[str, Any]:
    return {"message": message, "error": "Bad Request", "statusCode": 400}


def _route(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str | None]:
    if method == "GET" and path == "/api/server/ping":
        return "ping", None
    if method == "GET" and path == "/api/users/me":
        return "me", None
    if method == "POST" and path == "/api/search/metadata":
        return "search", None
    if method == "GET" and path == "/api/people":
        return "people", None
    if method == "GET" and path == "/api/faces":
        return "faces", (query.get("id") or [""])[0]
    segments = path.split("/")
    if method == "GET" and len(segments) == 5 and segments[1:3] == ["api", "assets"]:
        return ("original", unquote(segments[3])) if segments[4] == "original" else ("other", None)
    return "other", None
