"""The staging job: one user's Immich photos into a staging folder, one run at a time."""

from __future__ import annotations

from pathlib import Path

from facesets.orchestrator.connect import Services
from facesets.orchestrator.immich.config import KnownContent, StageConfig, StageSummary
from facesets.orchestrator.immich.downloader import Stager
from facesets.shared.folder_lock import run_locked


def stage(config: StageConfig, known_content: KnownContent | None = None) -> StageSummary:
    """Stage one user's Immich photos; `known_content` answers which SHA-256 digests the face
    store already holds (None: no store to deduplicate against). One run at a time per user
    folder: a second one is refused with FolderBusyError."""
    return run_locked([config.user_dir], lambda: Stager(config, known_content).run())


def store_known_content(opened: Services, store: Path) -> KnownContent:
    """`known_content` backed by the clustering service's KnownContent RPC (the service is
    started locally unless --clustering names one). Asking records nothing in the store."""
    client = opened.clustering()
    path = str(Path(store).expanduser().resolve())

    def known(digests: list[str]) -> set[str]:
        return client.known_content(path, digests)

    return known
