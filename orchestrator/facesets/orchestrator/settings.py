"""The `facesets` command's own settings: one typed object, every field overridable by an
environment variable with the FACESETS_ prefix (nested groups with `__`, e.g.
FACESETS_IMMICH__WORKERS=4). The job parameters' defaults are the contract's
(facesets.contract.defaults); the services have settings of their own.
"""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from facesets.shared.config import Config


class ImmichSettings(BaseModel):
    """`facesets immich stage` and `immich import` against an Immich server."""

    workers: int = 8  # downloads at once
    page_size: int = 250  # assets per search page
    # An Immich face and a facesets detection of the staged photo are one face from this box
    # overlap (intersection over union) on: two detectors never draw quite the same box.
    face_match_iou: float = 0.4
    people_page_size: int = 500  # people per GET /people page (Immich's default and limit 1000)
    min_face_short: int = 90  # assets whose largest face is smaller are not staged
    # Immich finds faces in a background job after upload: "no face" on an asset uploaded less
    # than this long ago may only mean "not looked at yet", so the next run asks again.
    no_face_final_after_s: int = 7 * 24 * 3600
    breaker_errors: int = 12  # consecutive failures that open the circuit breaker
    retries: int = 5  # attempts after the first
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    ping_timeout_s: float = 5.0  # the circuit breaker's probe
    backoff_s: float = 0.5  # first retry delay; doubles per attempt, with jitter
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0  # longest Retry-After (429/503) honoured
    state_save_s: float = 5.0  # state.json / queue.json rewritten at most this often
    staging_root: str = "immich-staging"
    # NAS thumbnail folders that external libraries pick up as photos (Synology, QNAP, desktop).
    exclude_globs: tuple[str, ...] = ("*/@eaDir/*", "*/.@__thumb/*", "*/.thumbnails/*")


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACESETS_", env_nested_delimiter="__", extra="ignore"
    )

    # The model pack a local inference service loads (`doctor` checks it is there).
    model_root: str = "~/.insightface"
    model_pack: str = "buffalo_l"
    # A local service (the embedded default) that exits unasked is started again on its port,
    # at most this many times per command.
    local_service_restarts: int = 3
    # A command stopped by SIGTERM or SIGHUP exits after this long even if its unwinding hangs
    # (its local services were told to stop at the signal). Longer than a service's own stop:
    # local.terminate's 15 s before SIGKILL.
    stop_deadline_s: float = 30.0
    # Where stderr is a file or a pipe, progress is a plain line this often (and one at the end).
    progress_interval_s: float = 10.0
    # How long a remote service may take to answer a command's first call before the command
    # says what is wrong (address, TLS, token, protocol); FACESETS_CONNECT_TIMEOUT_S.
    connect_timeout_s: float = 10.0
    immich: ImmichSettings = ImmichSettings()


def _load() -> CliSettings:
    """The settings; a FACESETS_* variable holding what its setting does not take stops the
    command here with the variable, its value and why (it was a traceback at import)."""
    try:
        return CliSettings()
    except ValidationError as error:
        said = []
        for item in error.errors():
            name = "FACESETS_" + "__".join(str(part).upper() for part in item["loc"])
            said.append(f"{name}={os.environ.get(name, item.get('input'))!s}: {item['msg']}")
        print("error: bad setting: " + "; ".join(said), file=sys.stderr)
        raise SystemExit(2) from None  # as a bad facesets.toml


SETTINGS = _load()
# facesets.toml and the environment (facesets.shared.config); main() loads the one --config
# names. Service addresses, credentials and the local inference service's model come from it.
CONFIG = Config(None)


def use_config(config: Config) -> None:
    global CONFIG
    CONFIG = config
    timeout = config.get("connect_timeout_s")
    if timeout is not None:
        SETTINGS.connect_timeout_s = float(timeout)
