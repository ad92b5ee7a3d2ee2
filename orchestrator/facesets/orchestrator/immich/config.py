"""What one staging run is asked to do, and what it reports back (with the exit codes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from facesets.orchestrator.settings import SETTINGS

# Which of these SHA-256 digests the face store already holds.
KnownContent = Callable[[list[str]], set[str]]


class StageSetupError(Exception):
    """Something needed before staging starts is missing or unreachable."""


EXIT_OK = 0
EXIT_ASSET_ERRORS = 1  # some assets failed; a re-run retries them
EXIT_OUTAGE = 2  # the server went away; state saved, the same command resumes
EXIT_AUTH = 3  # wrong API key, missing permission, or bad configuration
EXIT_BUSY = 4  # another run is staging into the same folder
EXIT_NO_SPACE = 5  # the staging folder's disk is full; what was staged is kept, a re-run goes on
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class StageConfig:
    url: str
    api_key: str = field(repr=False)
    user: str
    staging_root: Path
    workers: int = SETTINGS.immich.workers
    min_face_short: float = SETTINGS.immich.min_face_short
    excludes: tuple[str, ...] = ()
    default_excludes: tuple[str, ...] = SETTINGS.immich.exclude_globs
    page_size: int = SETTINGS.immich.page_size
    retries: int = SETTINGS.immich.retries
    backoff_s: float = SETTINGS.immich.backoff_s
    backoff_max_s: float = SETTINGS.immich.backoff_max_s
    retry_after_max_s: float = SETTINGS.immich.retry_after_max_s
    breaker_errors: int = SETTINGS.immich.breaker_errors
    timeout_s: float = SETTINGS.immich.timeout_s
    state_save_interval_s: float = SETTINGS.immich.state_save_s
    progress: bool = True
    refresh_faces: bool = False  # read the faces (and their people) of staged assets again

    @property
    def user_dir(self) -> Path:
        return Path(self.staging_root) / self.user


@dataclass
class StageSummary:
    user: str
    server: str
    staging_dir: str
    seen: int = 0
    already_done: int = 0  # done by an earlier run: nothing asked
    staged: int = 0
    staged_bytes: int = 0
    in_store: int = 0
    duplicates: int = 0
    no_face: int = 0
    no_big_face: int = 0
    excluded: int = 0
    partner: int = 0
    errors: int = 0
    people: int = 0  # Immich people read (named or not, hidden included)
    elapsed_s: float = 0.0
    min_face_short: float = 0.0
    outage: bool = False
    answered: bool = False  # the server answered once: an outage later is resumable
    interrupted: bool = False
    fatal: str | None = None
    no_space: str | None = None  # the disk filled: what the system said
    state_unsaved: str | None = None  # state.json could not be written: why

    @property
    def processed(self) -> int:
        return self.seen - self.already_done

    @property
    def assets_per_s(self) -> float:
        return self.seen / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return EXIT_AUTH
        if self.no_space is not None:
            return EXIT_NO_SPACE
        if self.outage:
            return EXIT_OUTAGE
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_ASSET_ERRORS if self.errors else EXIT_OK

    def report(self) -> str:
        rows = [
            ("staged", f"{self.staged}  ({self.staged_bytes / 1e6:.1f} MB) -> {self.staging_dir}"),
            ("already done (earlier runs)", self.already_done),
            ("in the face store already", self.in_store),
            ("duplicates within the library", self.duplicates),
            ("skipped: no face", self.no_face),
            (
                "skipped: no big face",
                f"{self.no_big_face}  (short edge < {self.min_face_short:g} px)",
            ),
            ("skipped: excluded", self.excluded),
            ("skipped: a partner's assets", self.partner),
            ("errors", self.errors),
            ("people in Immich", self.people),
        ]
        lines = [
            f"Immich staging for '{self.user}' ({self.server}): {self.seen} assets seen in "
            f"{self.elapsed_s:.1f} s ({self.assets_per_s:.1f} assets/s)"
        ]
        lines += [f"  {name:<32}{value}" for name, value in rows]
        if self.fatal:
            lines.append(f"stopped: {self.fatal}")
        elif self.no_space:
            lines.append(
                f"stopped: the disk of {self.staging_dir} is full ({self.no_space}); free some "
                "space and run the same command to go on"
            )
        elif self.outage and not self.answered:
            lines.append(
                f"stopped: no Immich server answered at {self.server}; check the address "
                "(IMMICH_URL) and that the server is running; nothing was staged"
            )
        elif self.outage:
            lines.append(
                "stopped: the Immich server is unreachable; state saved, run the same command "
                "to resume"
            )
        elif self.interrupted:
            lines.append("interrupted; state saved, run the same command to resume")
        elif self.errors:
            lines.append("some assets failed (see state.json); run the same command to retry them")
        if self.state_unsaved:
            lines.append(
                f"state.json could not be written ({self.state_unsaved}): the next run "
                "downloads again what this one staged"
            )
        return "\n".join(lines)
