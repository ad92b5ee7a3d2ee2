"""`facesets embed SRC STORE`: detect and embed every face of a photo tree into a face store."""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from facesets.client import ClusteringClient, FileStamp, ImageInput
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.console import progress_bar
from facesets.orchestrator.scan import (
    UNREADABLE_FOLDER,
    PhotoListing,
    ScannedFile,
    list_photos,
    scan_files,
    skipped_line,
)
from facesets.v1 import clustering_pb2, common_pb2

log = structlog.get_logger(__name__)
_DONE = object()
REGISTER_STREAM_CHUNK = 256  # files registered at a time while the listing goes on


@dataclass
class EmbedSummary:
    files: int = 0
    hashed: int = 0  # read and hashed; the others were unchanged since the store saw them
    unreadable: int = 0
    known: int = 0
    aliases_added: int = 0
    embedded: int = 0  # sent to inference now and read as a photo (with or without faces)
    failed: int = 0  # sent to inference now and refused (not a photo, corrupt...): `errors`
    faces_found: int = 0
    errors: Counter = field(default_factory=Counter)
    store: dict = field(default_factory=dict)
    seconds: float = 0.0
    restarts: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # files not photos, by extension
    replicas: Counter = field(default_factory=Counter)  # images answered, by inference replica
    inference_seconds: float = 0.0  # from the first image sent to the last result
    unreadable_files: list[dict[str, str]] = field(default_factory=list)  # path, error
    # Files that changed between their hashing and their reading: nothing stored for them (the
    # faces would be another content's); the next embed hashes and embeds them anew.
    changed_files: list[str] = field(default_factory=list)

    def replica_rates(self) -> dict[str, dict[str, float]]:
        """Images each inference replica answered, and its images per second over the run."""
        seconds = max(self.inference_seconds, 1e-9)
        return {
            name or "(unnamed)": {"images": count, "per_s": round(count / seconds, 2)}
            for name, count in sorted(self.replicas.items())
        }

    def as_dict(self) -> dict:
        fields = {k: v for k, v in self.__dict__.items() if k != "replicas"}
        return {**fields, "errors": dict(self.errors), "replicas": self.replica_rates()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="folder of photos (searched recursively)")
    parser.add_argument("store", type=Path, help="face store file (created if missing)")
    parser.add_argument(
        "--send",
        choices=("auto", "bytes", "path"),
        default="auto",
        help="send image bytes, or paths the inference service reads itself "
        "(auto: paths when the service runs on this machine)",
    )
    parser.add_argument(
        "--rehash",
        action="store_true",
        help="read and hash every file again, even those whose size and modification time "
        "are as the store last saw them",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_listing_arguments(parser)
    add_service_arguments(parser, "inference", "clustering")


def add_listing_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that lists a photo folder."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="list every file that is skipped (not a photo, hidden, a link to a folder) and why; "
        "without it they are counted by extension",
    )


def run(args: argparse.Namespace) -> int:
    with services(args, [args.src, args.store]) as opened:
        summary = embed(
            opened, args.src, args.store, send=args.send, rehash=args.rehash, verbose=args.verbose
        )
    print(json.dumps(summary.as_dict(), indent=2) if args.json else format_summary(summary))
    return 0


def embed(
    opened: Services,
    src: Path,
    store_path: Path,
    send: str = "auto",
    show_progress: bool = True,
    rehash: bool = False,
    verbose: bool = False,
) -> EmbedSummary:
    """Embed every photo file under src; what is skipped is counted in the summary and said on
    stderr (each file with `verbose`)."""
    listing = list_photos(src)
    report_skipped(listing, verbose)
    summary = embed_files(
        opened, listing.photos, store_path, send, show_progress, rehash, within=src
    )
    summary.skipped = listing.skipped_by_kind()
    report_unreadable(summary, verbose)
    return summary


UNREADABLE_SHOWN = 20  # unreadable files named on stderr without --verbose


def report_unreadable(summary: EmbedSummary, verbose: bool = False) -> None:
    """Each file that could not be read (FIFO, socket, device, permission...) on stderr, the
    first UNREADABLE_SHOWN of them without `verbose`."""
    files = summary.unreadable_files
    for item in files if verbose else files[:UNREADABLE_SHOWN]:
        print(f"unreadable {item['path']}  ({item['error']})", file=sys.stderr)
    if not verbose and len(files) > UNREADABLE_SHOWN:
        rest = len(files) - UNREADABLE_SHOWN
        print(f"... and {rest} more unreadable files (--verbose lists them)", file=sys.stderr)
    for path in summary.changed_files:
        print(
            f"changed {path}  (written to while it was embedded: nothing stored for it; "
            "the next embed takes its new content)",
            file=sys.stderr,
        )


def report_skipped(listing: PhotoListing, verbose: bool = False) -> None:
    """One line on stderr, `skipped 12 files: .mov 7, .xmp 3, .txt 2`; with `verbose`, every
    skipped file and why."""
    for skipped in listing.skipped:
        # A folder that cannot be listed hides photos: always named, as unreadable files are.
        if verbose or skipped.kind == UNREADABLE_FOLDER:
            print(f"skipped {skipped.path}  ({skipped.why})", file=sys.stderr)
    line = skipped_line(listing.skipped_by_kind())
    if line:
        print(line + ("" if verbose else "  (--verbose lists them)"), file=sys.stderr, flush=True)


def embed_files(
    opened: Services,
    paths: list[str],
    store_path: Path,
    send: str = "auto",
    show_progress: bool = True,
    rehash: bool = False,
    within: Path | None = None,
) -> EmbedSummary:
    """Embed the given files (absolute paths) into the store; what it holds is skipped.
    `within`: the folder they were listed in; a file that no longer lies inside it when read
    (a link swapped in) is reported unreadable, unread.

    Files are hashed and registered in chunks while inference already works on the first
    ones. Files whose size and modification time are as the store last recorded them keep
    their recorded digest without being read (all are read again with `rehash`).
    """
    started = time.monotonic()
    summary = EmbedSummary(files=len(paths))
    folder = None if within is None else str(Path(within).resolve())
    store = str(Path(store_path).resolve())
    clustering = opened.clustering()
    clustering.open_store(store)
    known = {} if rehash else clustering.lookup_paths(store, paths)
    listing = _Listing(clustering, store, summary)
    scanner = threading.Thread(
        target=listing.run,
        args=(scan_files(paths, known, show_progress=show_progress, within=folder),),
        name="scan",
        daemon=True,
    )
    scanner.start()
    first = listing.pending.get()
    if first is not _DONE:
        inference = opened.inference()
        info = inference.info()
        clustering.open_store(store, info.model_pack, info.embedding_dim)
        by_path = send == "path" or (send == "auto" and opened.is_local("inference"))
        pending = itertools.chain([first], iter(listing.pending.get, _DONE))
        _embed_pending(opened, store, pending, listing, by_path, show_progress, folder)
        summary.restarts = inference.restarts + clustering.restarts
    scanner.join()
    if listing.failure:
        raise listing.failure[0]
    stats = clustering.stats(store)
    summary.store = {
        "images": stats.images,
        "faces": stats.faces,
        "images_without_faces": stats.images_without_faces,
        "aliases": stats.aliases,
        "errors_by_reason": dict(stats.errors_by_reason),
        "model_pack": stats.model_pack,
        "embedding_dim": stats.embedding_dim,
    }
    summary.seconds = round(time.monotonic() - started, 2)
    return summary


class _Listing:
    """Registers scanned files in chunks as they come; what needs inference goes to `pending`
    (one entry per unknown content), then _DONE."""

    def __init__(self, clustering: ClusteringClient, store: str, summary: EmbedSummary) -> None:
        self.clustering = clustering
        self.store = store
        self.summary = summary
        self.pending: queue.Queue = queue.Queue()
        self.queued = 0  # entries put in `pending`; final once `complete` is set
        self.complete = threading.Event()
        self.failure: list[BaseException] = []
        self._seen: set[str] = set()

    def run(self, scanned_files: Iterator[ScannedFile]) -> None:
        try:
            chunk: list[clustering_pb2.FileEntry] = []
            for scanned in scanned_files:
                chunk.append(self._entry(scanned))
                if len(chunk) >= REGISTER_STREAM_CHUNK:
                    self._register(chunk)
                    chunk = []
            self._register(chunk)
            self.complete.set()
        except BaseException as error:  # surfaced in the main thread
            self.failure.append(error)
        finally:
            self.pending.put(_DONE)

    def _entry(self, scanned: ScannedFile) -> clustering_pb2.FileEntry:
        self.summary.hashed += scanned.hashed
        entry = clustering_pb2.FileEntry(
            path=scanned.path, sha256=scanned.sha256, size=scanned.size, mtime_ns=scanned.mtime_ns
        )
        if scanned.error:
            self.summary.unreadable += 1
            self.summary.unreadable_files.append({"path": scanned.path, "error": scanned.error})
            entry.error.CopyFrom(
                common_pb2.ImageError(
                    reason=common_pb2.ERROR_REASON_UNREADABLE, message=scanned.error
                )
            )
        return entry

    def _register(self, chunk: list[clustering_pb2.FileEntry]) -> None:
        if not chunk:
            return
        registered = self.clustering.register_files(self.store, chunk)
        self.summary.known += registered.known
        self.summary.aliases_added += registered.aliases_added
        for entry in registered.pending:
            # A content an earlier chunk already queued is still on its way to the store.
            if entry.sha256 not in self._seen:
                self._seen.add(entry.sha256)
                self.queued += 1
                self.pending.put(entry)


def _embed_pending(
    opened: Services,
    store: str,
    pending: Iterator[clustering_pb2.FileEntry],
    listing: _Listing,
    by_path: bool,
    show_progress: bool,
    within: str | None,
) -> None:
    summary = listing.summary
    entries: dict[str, clustering_pb2.FileEntry] = {}
    results: queue.Queue = queue.Queue(maxsize=256)
    failure: list[BaseException] = []

    def images() -> Iterator[ImageInput]:
        for entry in pending:
            entries[entry.sha256] = entry  # before its request goes out
            stamp = FileStamp(entry.size, entry.mtime_ns) if entry.mtime_ns else None
            yield ImageInput(id=entry.sha256, path=entry.path, within=within, expect=stamp)

    def infer() -> None:
        try:
            for result in opened.inference().embed(images(), by_path=by_path):
                results.put(result)
        except BaseException as error:  # surfaced in the main thread
            failure.append(error)
        finally:
            results.put(_DONE)

    def items() -> Iterator[clustering_pb2.IngestItem]:
        while (result := results.get()) is not _DONE:
            summary.replicas[result.replica] += 1
            summary.inference_seconds = round(time.monotonic() - started, 2)
            if result.error.reason == common_pb2.ERROR_REASON_CHANGED:
                summary.changed_files.append(entries[result.id].path)
                continue  # left pending: no faces stored under a digest of other bytes
            if result.HasField("error"):
                summary.errors[common_pb2.ErrorReason.Name(result.error.reason)] += 1
                summary.failed += 1
            summary.faces_found += len(result.faces)
            yield clustering_pb2.IngestItem(file=entries[result.id], result=result)

    started = time.monotonic()
    worker = threading.Thread(target=infer, name="inference", daemon=True)
    worker.start()
    try:
        # Exact once the listing is complete; until then, every file not known yet counts.
        with progress_bar(
            total=summary.files - summary.known - summary.unreadable,
            desc="embedding",
            unit="img",
            disable=not show_progress,
        ) as bar:
            for committed in opened.clustering().ingest(store, items()):
                summary.embedded += len(committed)
                if listing.complete.is_set() and bar.total != listing.queued:
                    bar.total = listing.queued
                bar.update(len(committed))
    except BaseException:
        # The store refused (or the user interrupted): end the inference stream now, rather
        # than have it take the services' shutdown for a restart and wait for them.
        opened.inference().close()
        raise
    worker.join()
    if failure:
        raise failure[0]
    # Committed counts every answered image; those refused are `failed`, not embedded.
    summary.embedded -= summary.failed


def format_summary(summary: EmbedSummary) -> str:
    store = summary.store
    lines = [
        f"files scanned       {summary.files}  (read and hashed {summary.hashed}, "
        f"unchanged {summary.files - summary.hashed - summary.unreadable})",
        f"  already in store  {summary.known}  (new aliases {summary.aliases_added})",
        f"  embedded now      {summary.embedded}  ({summary.faces_found} faces)",
        f"  failed            {summary.failed}"
        + (f"  ({_reasons(summary.errors)})" if summary.errors else ""),
        f"  unreadable        {summary.unreadable}",
        *(
            [f"  changed meanwhile {len(summary.changed_files)}  (not stored; embed again)"]
            if summary.changed_files
            else []
        ),
        f"  skipped           {sum(summary.skipped.values())}  "
        f"({', '.join(f'{kind} {count}' for kind, count in summary.skipped.items())})",
        f"store               {store.get('images', 0)} images, {store.get('faces', 0)} faces, "
        f"{store.get('images_without_faces', 0)} without faces, {store.get('aliases', 0)} aliases",
    ]
    for reason, count in sorted(store.get("errors_by_reason", {}).items()):
        lines.append(f"  errors {reason.removeprefix('ERROR_REASON_').lower():<12} {count}")
    if summary.replicas:
        lines.append(f"inference replicas  {len(summary.replicas)}")
        for name, rate in summary.replica_rates().items():
            lines.append(f"  {name:<24} {rate['images']:>6} images  {rate['per_s']:.2f}/s")
    if summary.restarts:
        lines.append(f"service restarts survived  {summary.restarts}")
    lines.append(f"time                {summary.seconds:.1f} s")
    return "\n".join(lines)


def _reasons(counts: Counter) -> str:
    return ", ".join(
        f"{reason.removeprefix('ERROR_REASON_').lower()} {count}"
        for reason, count in sorted(counts.items())
    )


COMMANDS = {
    "embed": ("detect and embed every face of a photo folder into a face store", add_arguments, run)
}
