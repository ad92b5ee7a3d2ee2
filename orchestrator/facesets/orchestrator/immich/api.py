"""A typed client for the few Immich endpoints the stager uses.

Contract: @immich/sdk 2.7.5 (`pingServer` GET /server/ping, `getMyUser` GET /users/me,
`searchAssets` POST /search/metadata, `getFaces` GET /faces?id=, `getAllPeople` GET /people,
`downloadAsset` GET /assets/{id}/original), all under the server's `/api` prefix, authenticated
with the `x-api-key` header. Transient failures (5xx, connection errors, timeouts, cut
downloads) are retried with exponential backoff; 429/503 Retry-After is honoured; a circuit
breaker stops every caller once the server looks down. The API key is held in request headers
only: it is never part of a repr, a log event or an error message."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypedDict, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import structlog

from facesets.orchestrator.settings import SETTINGS

log = structlog.get_logger(__name__)

T = TypeVar("T")

_CHUNK = 256 * 1024


# --- errors ----------------------------------------------------------------------------------
class ImmichError(Exception):
    """Base of every error the client raises."""


class ImmichAuthError(ImmichError):
    """401 / 403: a wrong API key or one missing a permission. Never retried."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ImmichRequestError(ImmichError):
    """A 4xx answer other than 401/403/429 (e.g. 400 for an asset that is gone)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ImmichProtocolError(ImmichError):
    """A 2xx answer whose body does not follow the contract."""


class ImmichUnavailable(ImmichError):
    """A transient failure persisted through every retry."""


class ImmichOutage(ImmichError):
    """The circuit breaker is open: the server stopped answering."""


class ImmichCancelled(ImmichError):
    """The caller asked every request in flight to stop."""


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, breaker: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.breaker = breaker  # 429 means "slow down", not "down": it does not trip the breaker


# --- response types (field names as in the SDK's DTOs) --------------------------------------
@dataclass(frozen=True)
class User:
    """UserAdminResponseDto, the part the stager needs."""

    id: str
    name: str
    storage_label: str | None

    @classmethod
    def from_json(cls, data: Any) -> User:
        try:
            return cls(
                id=str(data["id"]),
                name=str(data.get("name") or ""),
                storage_label=data.get("storageLabel") or None,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed user: {exc!r}") from None


@dataclass(frozen=True)
class Asset:
    """AssetResponseDto, the part the stager needs."""

    id: str
    type: str
    original_path: str
    original_file_name: str
    checksum: str  # base64 SHA-1 as Immich computed it
    owner_id: str
    library_id: str | None  # set for external-library assets
    width: int | None  # the original's pixels, from the asset or its EXIF, when known
    height: int | None
    file_size: int | None
    uploaded_at: datetime | None = None  # createdAt: when the asset reached Immich

    @classmethod
    def from_json(cls, data: Any) -> Asset:
        try:
            exif = data.get("exifInfo") or {}
            width, height = _positive(data.get("width")), _positive(data.get("height"))
            if width is None or height is None:
                width = _positive(exif.get("exifImageWidth"))
                height = _positive(exif.get("exifImageHeight"))
            if width is None or height is None:
                width = height = None
            return cls(
                id=str(data["id"]),
                type=str(data.get("type") or ""),
                original_path=str(data["originalPath"]),
                original_file_name=str(data.get("originalFileName") or ""),
                checksum=str(data.get("checksum") or ""),
                owner_id=str(data.get("ownerId") or ""),
                library_id=data.get("libraryId") or None,
                width=width,
                height=height,
                file_size=_positive(exif.get("fileSizeInByte")),
                uploaded_at=_timestamp(data.get("createdAt")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed asset: {exc!r}") from None


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as Immich writes it (UTC, 'Z'); None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FaceState(TypedDict):
    """A face as state.json keeps it (Face.as_json)."""

    id: str
    person_id: str | None
    box: list[float]  # x1, y1, x2, y2 in image_width x image_height
    image_width: int
    image_height: int


class PersonState(TypedDict):
    """A person as state.json keeps it (Person.as_json), under its Immich id."""

    name: str
    is_hidden: bool
    birth_date: str | None


@dataclass(frozen=True)
class Face:
    """AssetFaceResponseDto: a box in the pixel space of imageWidth x imageHeight (the preview
    Immich ran detection on), not in the original's."""

    id: str
    x1: float
    y1: float
    x2: float
    y2: float
    image_width: int
    image_height: int
    person_id: str | None

    @classmethod
    def from_json(cls, data: Any) -> Face:
        try:
            person = data.get("person") or {}
            return cls(
                id=str(data["id"]),
                x1=float(data["boundingBoxX1"]),
                y1=float(data["boundingBoxY1"]),
                x2=float(data["boundingBoxX2"]),
                y2=float(data["boundingBoxY2"]),
                image_width=int(data["imageWidth"]),
                image_height=int(data["imageHeight"]),
                person_id=person.get("id") if isinstance(person, dict) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed face: {exc!r}") from None

    def as_json(self) -> FaceState:
        """The face as state.json keeps it: its person and its box in imageWidth x imageHeight."""
        return {
            "id": self.id,
            "person_id": self.person_id,
            "box": [self.x1, self.y1, self.x2, self.y2],
            "image_width": self.image_width,
            "image_height": self.image_height,
        }

    @classmethod
    def from_state(cls, data: Any) -> Face:
        try:
            x1, y1, x2, y2 = (float(v) for v in data["box"])
            return cls(
                id=str(data["id"]),
                x1=x1,
                y1=y1,
                x2=x2,
                y2=y2,
                image_width=int(data["image_width"]),
                image_height=int(data["image_height"]),
                person_id=data.get("person_id") or None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed face: {exc!r}") from None


@dataclass(frozen=True)
class Person:
    """PersonResponseDto, the part the import needs (an unnamed person's name is "")."""

    id: str
    name: str
    is_hidden: bool
    birth_date: str | None

    @classmethod
    def from_json(cls, data: Any) -> Person:
        try:
            return cls(
                id=str(data["id"]),
                name=str(data.get("name") or "").strip(),
                is_hidden=bool(data.get("isHidden")),
                birth_date=data.get("birthDate") or None,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed person: {exc!r}") from None

    def as_json(self) -> PersonState:
        return {"name": self.name, "is_hidden": self.is_hidden, "birth_date": self.birth_date}


@dataclass(frozen=True)
class PeoplePage:
    """PeopleResponseDto: `hasNextPage` (Immich >= 1.110) tells whether to ask for more."""

    people: list[Person]
    has_next_page: bool


@dataclass(frozen=True)
class SearchPage:
    """SearchAssetResponseDto. Immich's `total` counts this page only, like `count`."""

    items: list[Asset]
    next_page: int | None


@dataclass(frozen=True)
class Download:
    size: int
    sha256: str
    content_type: str


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


# --- retry policy and circuit breaker ---------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    retries: int = SETTINGS.immich.retries  # attempts after the first
    backoff_s: float = SETTINGS.immich.backoff_s
    backoff_max_s: float = SETTINGS.immich.backoff_max_s
    retry_after_max_s: float = SETTINGS.immich.retry_after_max_s

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so workers that failed together do not retry
        together."""
        base = min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)


class CircuitBreaker:
    """Counts consecutive transient failures across all callers.

    Every `threshold` consecutive failures it probes the server (GET /server/ping); a failed
    probe opens the breaker. A server that answers pings while every other request keeps
    failing opens it too, after `hard_factor` x `threshold` failures in a row.
    """

    def __init__(
        self,
        threshold: int,
        probe: Callable[[], bool],
        opened: threading.Event,
        on_open: Callable[[], None] | None = None,
        hard_factor: int = 4,
    ) -> None:
        self.threshold = max(1, threshold)
        self._probe = probe
        self.opened = opened
        self._on_open = on_open
        self._hard_limit = self.threshold * hard_factor
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._consecutive = 0
        self._next_probe = self.threshold
        self.reason = ""

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._next_probe = self.threshold

    def failure(self, reason: str) -> None:
        with self._lock:
            self._consecutive += 1
            count = self._consecutive
            probe = count >= self._next_probe
            if probe:
                self._next_probe = count + self.threshold
        if probe and not self.opened.is_set():
            with self._probe_lock:
                if count >= self._hard_limit:
                    self._open(f"{count} consecutive failures although the server answers ping")
                elif not self._probe():
                    self._open(f"{count} consecutive failures (last: {reason}); ping failed")
                else:
                    log.warning("immich.breaker.probe_ok", consecutive_failures=count)
        self.check()

    def check(self) -> None:
        if self.opened.is_set():
            raise ImmichOutage(self.reason or "the Immich server is unreachable")

    def _open(self, reason: str) -> None:
        self.reason = reason
        log.error("immich.breaker.open", reason=reason)
        self.opened.set()
        if self._on_open is not None:
            self._on_open()


# --- the client --------------------------------------------------------------------------------
def api_base_url(url: str) -> str:
    """The API root for a server address given with or without its `/api` suffix."""
    url = url.strip().rstrip("/")
    if not url:
        raise ValueError("the Immich URL is empty")
    if not urlsplit(url).scheme:
        url = "http://" + url
    return url if url.endswith("/api") else url + "/api"


def redact_url(url: str) -> str:
    """The URL without user:password, fit for logs and state files."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ImmichClient:
    """Thread-safe: one client (one connection pool) serves every worker."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        retry: RetryPolicy | None = None,
        breaker_errors: int = SETTINGS.immich.breaker_errors,
        timeout_s: float = SETTINGS.immich.timeout_s,
        connect_timeout_s: float = SETTINGS.immich.connect_timeout_s,
        ping_timeout_s: float = SETTINGS.immich.ping_timeout_s,
        max_connections: int = SETTINGS.immich.workers + 2,
        cancel: threading.Event | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("the Immich API key is empty")
        self.base_url = api_base_url(url)
        self.display_url = redact_url(self.base_url)
        self.retry = retry or RetryPolicy()
        self.cancel = cancel if cancel is not None else threading.Event()
        self.outage = threading.Event()
        self._ping_timeout = httpx.Timeout(ping_timeout_s)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": api_key, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # A redirect could carry the key to another host: refused, with the address to use.
            follow_redirects=False,
        )
        # An open breaker also cancels: callers sleeping in a backoff wake up and stop.
        self.breaker = CircuitBreaker(breaker_errors, self.ping, self.outage, self.cancel.set)

    def __repr__(self) -> str:
        return f"ImmichClient({self.display_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ImmichClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints ---------------------------------------------------------------------------
    def ping(self) -> bool:
        """One GET /server/ping, no retry: the breaker's probe."""
        try:
            response = self._http.get("/server/ping", timeout=self._ping_timeout)
            return response.status_code == 200 and response.json().get("res") == "pong"
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def me(self) -> User:
        return User.from_json(self._json("GET", "/users/me", what="user"))

    def search_images(self, page: int, size: int, with_exif: bool = True) -> SearchPage:
        body = {"type": "IMAGE", "page": page, "size": size, "withExif": with_exif}
        data = self._json("POST", "/search/metadata", json=body, what=f"search page {page}")
        try:
            assets = data["assets"]
            items = [Asset.from_json(item) for item in assets["items"]]
            token = assets.get("nextPage")
            next_page = int(token) if token not in (None, "") else None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed search response: {exc!r}") from None
        return SearchPage(items=items, next_page=next_page)

    def faces(self, asset_id: str) -> list[Face]:
        data = self._json("GET", "/faces", params={"id": asset_id}, what=f"faces of {asset_id}")
        if not isinstance(data, list):
            raise ImmichProtocolError(f"faces of {asset_id}: expected a list")
        return [Face.from_json(item) for item in data]

    def people_page(self, page: int, size: int) -> PeoplePage:
        """One page of the user's people, hidden ones included (they are told apart)."""
        params = {"withHidden": "true", "page": page, "size": size}
        data = self._json("GET", "/people", params=params, what=f"people page {page}")
        try:
            people = [Person.from_json(item) for item in data["people"]]
            more = bool(data.get("hasNextPage"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ImmichProtocolError(f"malformed people response: {exc!r}") from None
        return PeoplePage(people=people, has_next_page=more)

    def download_original(self, asset_id: str, sink: BinaryIO) -> Download:
        """Stream the original into `sink` (rewound and truncated on each attempt), hashing as it
        goes. A body shorter or longer than its Content-Length is a transient failure."""
        path = f"/assets/{quote(asset_id, safe='')}/original"

        def attempt() -> Download:
            sink.seek(0)
            sink.truncate()
            digest = hashlib.sha256()
            received = 0
            try:
                # identity: Content-Length must count the bytes that are stored.
                headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
                with self._http.stream("GET", path, headers=headers) as response:
                    self._raise_for_status(response, stream=True)
                    declared = response.headers.get("content-length")
                    content_type = response.headers.get("content-type", "")
                    for chunk in response.iter_raw(_CHUNK):
                        sink.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
            except httpx.HTTPError as exc:
                raise _Transient(f"download cut: {type(exc).__name__}") from None
            if declared is not None and declared.isdigit() and int(declared) != received:
                raise _Transient(f"short download: {received} of {declared} bytes")
            sink.flush()
            return Download(size=received, sha256=digest.hexdigest(), content_type=content_type)

        return self._call(f"original of {asset_id}", attempt)

    # --- machinery ---------------------------------------------------------------------------
    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        def attempt() -> Any:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise _Transient(f"{type(exc).__name__}") from None
            self._raise_for_status(response)
            try:
                return response.json()
            except ValueError:
                raise ImmichProtocolError(f"{what}: the answer is not JSON") from None

        return self._call(what, attempt)

    def _call(self, what: str, attempt: Callable[[], T]) -> T:
        tries = 0
        while True:
            self.breaker.check()
            if self.cancel.is_set():
                raise ImmichCancelled(what)
            try:
                result = attempt()
            except _Transient as failure:
                tries += 1
                if failure.breaker:
                    self.breaker.failure(f"{what}: {failure.reason}")
                if tries > self.retry.retries:
                    raise ImmichUnavailable(
                        f"{what}: {failure.reason} ({tries} attempts)"
                    ) from None
                delay = (
                    min(failure.retry_after, self.retry.retry_after_max_s)
                    if failure.retry_after is not None
                    else self.retry.delay(tries)
                )
                log.debug(
                    "immich.retry",
                    what=what,
                    reason=failure.reason,
                    attempt=tries,
                    delay_s=round(delay, 3),
                )
                self._wait(delay, what)
                continue
            except ImmichRequestError:
                self.breaker.success()  # the server answered: it is up
                raise
            self.breaker.success()
            return result

    def _wait(self, delay: float, what: str) -> None:
        if self.cancel.wait(max(0.0, delay)):
            self.breaker.check()
            raise ImmichCancelled(what)
        self.breaker.check()

    def _raise_for_status(self, response: httpx.Response, stream: bool = False) -> None:
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            target = response.headers.get("location", "?")
            raise ImmichRequestError(
                f"{status} redirect to {redact_url(target)}: set IMMICH_URL to that address",
                status,
            )
        if stream:
            with contextlib.suppress(httpx.HTTPError):
                response.read()
        message = _error_message(response)
        if status in (401, 403):
            hint = (
                "the API key is wrong or revoked"
                if status == 401
                else "the API key lacks a permission (needs user.read, asset.read, face.read, "
                "person.read, asset.download)"
            )
            raise ImmichAuthError(
                f"Immich refused the request ({status} {message}): {hint}", status
            )
        if status == 429 or status >= 500 or status == 408:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise _Transient(f"{status} {message}".strip(), retry_after, breaker=status != 429)
        raise ImmichRequestError(f"{status} {message}".strip(), status)


def _error_message(response: httpx.Response) -> str:
    """Immich's error body is {message, error, statusCode}; fall back to the reason phrase."""
    try:
        data = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return response.reason_phrase
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, list):
            message = "; ".join(str(m) for m in message)
        return str(message or data.get("error") or response.reason_phrase)
    return response.reason_phrase


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
