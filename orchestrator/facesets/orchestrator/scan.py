"""Listing a photo tree: photo files, each with its sha256, or the reason it cannot be read;
and every other file, with why it was skipped."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Protocol

from facesets.client.files import inside, is_utf8, open_regular
from facesets.contract import layout, photo_formats
from facesets.orchestrator.console import progress_bar

CHUNK = 1 << 20


@dataclass(frozen=True)
class ScannedFile:
    path: str  # absolute
    sha256: str = ""
    size: int = 0
    error: str = ""  # why it could not be read
    mtime_ns: int = 0
    hashed: bool = False  # read and hashed now, rather than known unchanged


class Known(Protocol):
    """What a store remembers of a path: its content's digest, size and modification time."""

    sha256: str
    size: int
    mtime_ns: int


HIDDEN = "hidden"
FOLDER_LINK = "link to a folder"
OUTSIDE_LINK = "link out of the folder"
NOT_UTF8 = "name not UTF-8"
OUTPUT_FOLDER = "facesets output folder"
UNREADABLE_FOLDER = "unreadable folder"


@dataclass(frozen=True)
class SkippedFile:
    path: str  # absolute
    kind: str  # its extension (".mov"), NO_EXTENSION or one of the kinds above
    detail: str = ""  # an unreadable folder's error

    @property
    def why(self) -> str:
        if self.kind == UNREADABLE_FOLDER:
            return f"a folder that cannot be listed ({self.detail}): its photos are left out"
        if self.kind == HIDDEN:
            return "hidden file"
        if self.kind == FOLDER_LINK:
            return "links are not followed"
        if self.kind == OUTSIDE_LINK:
            return "a link to a file outside the folder; such links are not followed"
        if self.kind == OUTPUT_FOLDER:
            return (
                f"a folder facesets wrote (it holds {layout.WRITER_LOCK}): its crops, "
                "thumbnails and linked photos are not new photos to embed"
            )
        if self.kind == NOT_UTF8:
            return (
                "its name is not valid UTF-8 (another encoding, such as Latin-1); rename it, "
                "for instance with `convmv -f latin1 -t utf8 -r --notest FOLDER`"
            )
        return "not a photo format read here"


@dataclass
class PhotoListing:
    photos: list[str] = field(default_factory=list)  # absolute, sorted
    skipped: list[SkippedFile] = field(default_factory=list)  # sorted by path

    def skipped_by_kind(self) -> dict[str, int]:
        """Skipped files counted by extension (or kind), most frequent first."""
        counts = Counter(skipped.kind for skipped in self.skipped)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def list_photos(root: Path) -> PhotoListing:
    """Every file under root: photos (photo_formats' extensions, any case) and the others.

    A link to a file is followed only inside root (another name for a photo there, as the
    services confine paths to their roots): one leading out of it is listed with the skipped
    files, unread, so a folder cannot hand out a file from elsewhere. Links that point
    nowhere inside root are kept with the photos so that they are reported, not silently
    skipped; links to folders are not followed, and are listed with the skipped files. So are
    folders below root that facesets wrote (an export or a run's OUT kept among the photos)
    and names that are not UTF-8.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    if not is_utf8(str(root)):
        raise ValueError(
            f"the path of {ascii(str(root))} is not valid UTF-8 (another encoding, such as "
            "Latin-1); rename its folders, for instance with `convmv -f latin1 -t utf8`"
        )
    listing = PhotoListing()

    def unreadable(error: OSError) -> None:  # os.walk would leave the folder out silently
        where = str(error.filename or root)
        listing.skipped.append(SkippedFile(where, UNREADABLE_FOLDER, error.strerror or str(error)))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=False):
        walked = []
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if not is_utf8(name):  # skipped whole: every path under it is not UTF-8 either
                listing.skipped.append(SkippedFile(path, NOT_UTF8))
            elif os.path.lexists(os.path.join(path, layout.WRITER_LOCK)):
                # An export or a run's OUT kept among the photos: embedding it again would
                # add each faceset's crops as new faces.
                listing.skipped.append(SkippedFile(path, OUTPUT_FOLDER))
            else:
                walked.append(name)
                if os.path.islink(path):  # os.walk does not follow it
                    listing.skipped.append(SkippedFile(path, FOLDER_LINK))
        dirs[:] = walked
        for name in files:
            path = os.path.join(folder, name)
            if not is_utf8(name):
                listing.skipped.append(SkippedFile(path, NOT_UTF8))
            elif os.path.islink(path) and not inside(path, root):
                listing.skipped.append(SkippedFile(path, OUTSIDE_LINK))
            elif photo_formats.is_photo_name(name):
                listing.photos.append(path)
            else:
                kind = HIDDEN if name.startswith(".") else photo_formats.extension(name)
                listing.skipped.append(SkippedFile(path, kind))
    listing.photos.sort()
    listing.skipped.sort(key=lambda skipped: skipped.path)
    return listing


def list_images(root: Path) -> list[str]:
    """Every photo file under root, sorted, as absolute paths."""
    return list_photos(root).photos


FOLDER_KINDS = frozenset({FOLDER_LINK, OUTPUT_FOLDER, UNREADABLE_FOLDER})


def skipped_line(counts: Mapping[str, int]) -> str:
    """`skipped 12 files: .mov 7, .xmp 3, .txt 2` (`skipped 2 files, 1 folder: ...` where
    whole folders were left out); empty when nothing was skipped."""
    folders = sum(n for kind, n in counts.items() if kind in FOLDER_KINDS)
    files = sum(counts.values()) - folders
    if not files and not folders:
        return ""
    parts = [
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in ((files, "file"), (folders, "folder"))
        if n
    ]
    kinds = ", ".join(f"{kind} {count}" for kind, count in counts.items())
    return f"skipped {', '.join(parts)}: {kinds}"


def hash_file(path: str, within: str | None = None) -> ScannedFile:
    """The file's digest, size and time; with `within`, only while the file opened lies inside
    that folder (a link swapped in after the listing is reported, unread)."""
    digest = hashlib.sha256()
    size = 0
    try:
        # Regular files alone: a FIFO named like a photo would block a plain open() forever,
        # and a link to /dev/zero would never end; they are reported as unreadable instead.
        with open_regular(path, within) as handle:
            # The time before reading: a change while hashing shows up as a newer time later.
            mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        return ScannedFile(path, error=f"cannot read: {error.strerror or error}")
    return ScannedFile(path, digest.hexdigest(), size, mtime_ns=mtime_ns, hashed=True)


def scan_file(path: str, known: Known | None, within: str | None = None) -> ScannedFile:
    """A file's digest: the one known for it while its size and modification time are
    unchanged (as git and rsync judge a file), else read and hashed now (`within`: as
    hash_file). A link is always read again, through hash_file's checks."""
    if known is not None and known.mtime_ns:
        try:
            stat = os.lstat(path)
        except OSError:
            return hash_file(path, within)  # reports why it cannot be read
        unchanged = stat.st_size == known.size and stat.st_mtime_ns == known.mtime_ns
        if unchanged and S_ISREG(stat.st_mode):
            return ScannedFile(path, known.sha256, known.size, mtime_ns=known.mtime_ns)
    return hash_file(path, within)


def scan_files(
    paths: list[str],
    known: Mapping[str, Known] | None = None,
    workers: int = 4,
    show_progress: bool = True,
    within: str | None = None,
) -> Iterator[ScannedFile]:
    """Each path's digest, in order; `known` (path -> what a store remembers) spares reading
    the files that have not changed since; `within`: the folder they were listed in, which
    each must still lie inside when read."""
    known = known or {}
    with (
        ThreadPoolExecutor(workers) as pool,
        progress_bar(
            total=len(paths), desc="hashing", unit="file", disable=not show_progress, leave=False
        ) as bar,
    ):
        for scanned in pool.map(lambda path: scan_file(path, known.get(path), within), paths):
            bar.update()
            yield scanned
