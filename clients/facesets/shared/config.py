"""`facesets.toml`: one file that the command and `facesets serve` read.

Found at `--config FILE`, else `$FACESETS_CONFIG`, else the user's config folder
(`$XDG_CONFIG_HOME/facesets/facesets.toml`, `~/.config/facesets/facesets.toml`, or
`%APPDATA%\\facesets\\facesets.toml` on Windows). Every key also has an environment variable,
FACESETS_ and the key in capitals; a flag wins over the environment, which wins over the file.
Relative paths in the file are taken from the file's folder.

    inference = ["10.0.0.5:50051", "10.0.0.6:50051"]  # replicas
    clustering = "10.0.0.7:50052"
    export = "10.0.0.7:50053"
    token_file = "/etc/facesets/token"
    tls_ca = "/etc/facesets/ca.pem"
    roots = ["/srv/photos", "/srv/facesets"]
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "facesets.toml"
ENV_FILE = "FACESETS_CONFIG"
PREFIX = "FACESETS_"


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # "str", "path", "paths", "addresses", "int", "float"
    help: str

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()


KEYS: tuple[Key, ...] = (
    Key("inference", "addresses", "inference service HOST:PORT, or a list of replicas"),
    Key("clustering", "addresses", "clustering service HOST:PORT"),
    Key("export", "addresses", "export/media service HOST:PORT"),
    Key("token_file", "path", "bearer token file: sent by the command, required by `serve`"),
    Key("tls_ca", "path", "CA certificate (PEM) of TLS services"),
    Key("tls_cert", "path", "`serve`: its TLS certificate (PEM)"),
    Key("tls_key", "path", "`serve`: its TLS private key (PEM)"),
    Key("roots", "paths", "`serve`: the folders requests may name (--allow-root)"),
    Key("inference_listen", "str", "`serve inference`: HOST:PORT to listen on"),
    Key("clustering_listen", "str", "`serve clustering`: HOST:PORT to listen on"),
    Key("export_listen", "str", "`serve export`: HOST:PORT to listen on"),
    Key("model_root", "path", "folder holding models/PACK"),
    Key("model_pack", "str", "model pack name"),
    Key("providers", "str", "execution providers in order, e.g. dml,cuda,cpu"),
    Key("clip_dir", "path", "exported CLIP folder for ClipScore"),
    Key("workers", "int", "`serve inference`: images decoded and detected at once"),
    Key("connect_timeout_s", "float", "seconds a first contact with a service may take"),
)
BY_NAME = {key.name: key for key in KEYS}
SECRET_WORDS = ("secret", "password", "api_key")  # redacted by `config show`


class ConfigError(ValueError):
    """The config file cannot be read, or holds a key or value that is not understood."""


def user_config_file() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "facesets" / FILE_NAME


def find(explicit: Path | None = None) -> Path | None:
    """The config file in use: `explicit`, $FACESETS_CONFIG (each must exist), or the user's
    one when it exists."""
    named = explicit or (Path(os.environ[ENV_FILE]) if os.environ.get(ENV_FILE) else None)
    if named is not None:
        named = named.expanduser()
        if not named.is_file():
            how = "--config" if explicit else ENV_FILE
            what = "is a folder, not a file" if named.is_dir() else "does not exist"
            raise ConfigError(f"config file {named} (from {how}) {what}")
        return named.resolve()
    user = user_config_file()
    return user.resolve() if user.is_file() else None


def _convert(key: Key, value: Any, base: Path | None, origin: str) -> Any:
    def path(item: Any) -> str:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key.name} in {origin}: a path is a non-empty string")
        found = Path(item).expanduser()
        if base is not None and not found.is_absolute():
            found = base / found
        return str(found)

    try:
        if key.kind == "path":
            return path(value)
        if key.kind == "paths":
            items = value.split(os.pathsep) if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ConfigError(f"{key.name} in {origin}: a list of paths")
            return [path(item) for item in items if item]
        if key.kind == "addresses":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ConfigError(f"{key.name} in {origin}: HOST:PORT or a list of them")
            return ",".join(i.strip() for i in items if i.strip())
        if key.kind == "int":
            return int(value)
        if key.kind == "float":
            return float(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key.name} in {origin}: a string")
        return value
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{key.name} in {origin}: {error}") from error


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "flag", "env FACESETS_X", "file PATH", "default"


class Config:
    """The file's values and the environment's, each with where it came from."""

    def __init__(self, path: Path | None, environ: dict[str, str] | None = None) -> None:
        self.path = path
        self._env = dict(os.environ if environ is None else environ)
        self._file: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
                raise ConfigError(f"config file {path}: {error}") from error
            unknown = sorted(set(data) - set(BY_NAME))
            if unknown:
                raise ConfigError(
                    f"config file {path}: unknown key(s) {', '.join(unknown)}; known: "
                    + ", ".join(BY_NAME)
                )
            self._file = {
                name: _convert(BY_NAME[name], value, path.parent, str(path))
                for name, value in data.items()
            }

    @classmethod
    def load(cls, explicit: Path | None = None) -> Config:
        return cls(find(explicit))

    def setting(self, name: str, flag: Any = None) -> Setting:
        """A key's value: the flag's when given, else the environment's, else the file's."""
        key = BY_NAME[name]
        if flag not in (None, "", []):
            return Setting(flag, "flag")
        raw = self._env.get(key.env)
        if raw:
            return Setting(_convert(key, raw, None, key.env), f"env {key.env}")
        if name in self._file:
            return Setting(self._file[name], f"file {self.path}")
        return Setting(None, "default")

    def get(self, name: str, flag: Any = None) -> Any:
        return self.setting(name, flag).value

    def show(self) -> list[tuple[str, str, str]]:
        """(key, value, source) for every key; a secret's value is redacted."""
        rows = []
        for key in KEYS:
            found = self.setting(key.name)
            value = found.value
            if value is None:
                shown = "(unset)"
            elif any(word in key.name for word in SECRET_WORDS):
                shown = "<redacted>"
            elif isinstance(value, list):
                shown = ", ".join(value)
            else:
                shown = str(value)
            rows.append((key.name, shown, found.source))
        return rows
