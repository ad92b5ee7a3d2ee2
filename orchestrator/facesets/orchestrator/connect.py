"""Clients for the services a command needs: remote when an address is given, local otherwise."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from facesets.client import ClusteringClient, Endpoint, ExportClient, InferenceClient
from facesets.orchestrator import settings as _settings
from facesets.orchestrator.local import LocalService
from facesets.orchestrator.roots import command_roots
from facesets.orchestrator.settings import SETTINGS
from facesets.shared.config import Config
from facesets.shared.tokens import read_token


def _config() -> Config:
    """The loaded config, read at call time: main() loads it after the modules are imported."""
    return _settings.CONFIG


def add_service_arguments(parser: argparse.ArgumentParser, *services: str) -> None:
    group = parser.add_argument_group(
        "services",
        "Where the services listen. Without an address, the command starts the "
        "service itself on a free loopback port and stops it at the end.",
    )
    for name in services:
        if name == "inference":
            group.add_argument(
                "--inference",
                metavar="HOST:PORT[,HOST:PORT...]",
                help="address of the inference service; several addresses (or a name that "
                "resolves to several) are replicas that share the images round-robin",
            )
            continue
        group.add_argument(f"--{name}", metavar="HOST:PORT", help=f"address of the {name} service")
    group.add_argument(
        "--token-file",
        type=Path,
        help="bearer token for services that listen beyond loopback (or FACESETS_TOKEN_FILE)",
    )
    group.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) of TLS services")
    if "inference" in services:
        local = parser.add_argument_group("local inference service")
        local.add_argument("--model-root", help="folder holding models/PACK (FACESETS_MODEL_ROOT)")
        local.add_argument("--model-pack", help="model pack name (FACESETS_MODEL_PACK)")
        local.add_argument("--providers", help="execution providers in order, e.g. dml,cuda,cpu")
        local.add_argument(
            "--clip-dir",
            help="exported CLIP folder for ClipScore (`facesets clip export`; FACESETS_CLIP_DIR)",
        )


@dataclass(frozen=True)
class ServiceOptions:
    """Where a command's services are and how to reach them: an address per remote service
    (none: started locally), the credentials for remote ones, and what a local inference
    service is started with."""

    addresses: dict[str, str]
    token_file: Path | None = None
    tls_ca: Path | None = None
    model_root: str | None = None
    model_pack: str | None = None
    providers: str | None = None
    clip_dir: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceOptions:
        """From the flags `add_service_arguments` declares, else the environment (FACESETS_*),
        else facesets.toml (facesets.shared.config)."""
        config = _config()
        token_file = config.get("token_file", getattr(args, "token_file", None))
        tls_ca = config.get("tls_ca", getattr(args, "tls_ca", None))
        addresses = {
            name: str(config.get(name, getattr(args, name, None)))
            for name in ("inference", "clustering", "export")
            if config.get(name, getattr(args, name, None))
        }
        return cls(
            addresses=addresses,
            token_file=Path(token_file) if token_file else None,
            tls_ca=Path(tls_ca) if tls_ca else None,
            model_root=_str(config.get("model_root", _flag(args, "model_root"))),
            model_pack=_str(config.get("model_pack", _flag(args, "model_pack"))),
            providers=_str(config.get("providers", _flag(args, "providers"))),
            clip_dir=_str(config.get("clip_dir", _flag(args, "clip_dir"))),
        )


def _str(value: object) -> str | None:
    return str(value) if value else None


def _flag(args: argparse.Namespace, name: str) -> str | None:
    value = getattr(args, name, None)
    return str(value) if value else None


class ClientOptions(TypedDict):
    """The keyword arguments every typed client takes."""

    endpoint: Endpoint
    timeout: float
    wait_for_ready: bool


class Services(contextlib.ExitStack):
    """Opens clients lazily; a local service is started the first time it is needed.

    `roots`: the files and folders the command works on (sources, store, outputs); a local
    service may use those alone (`facesets serve --allow-root`), plus the folders of the photos
    a listed store holds. Remote services keep the roots they were started with.
    """

    def __init__(self, options: ServiceOptions, roots: Iterable[Path | None] = ()) -> None:
        super().__init__()
        self.options = options
        self.roots = list(roots)
        self.token_file = options.token_file
        self.token = read_token(self.token_file) if self.token_file else None
        self.tls_ca = options.tls_ca
        self._inference: InferenceClient | None = None
        self._clustering: ClusteringClient | None = None
        self._export: ExportClient | None = None
        self._export_peers = False  # whether the local export service was given its peers
        self.local: dict[str, LocalService] = {}

    def _address(self, name: str, peers: bool = True) -> str:
        address = self.options.addresses.get(name)
        if address:
            return address
        if name in self.local and (name != "export" or self._export_peers or not peers):
            return self.local[name].address
        extra: list[str] = []
        if name == "inference":
            o = self.options
            for flag, value in (
                ("--model-root", o.model_root),
                ("--model-pack", o.model_pack),
                ("--providers", o.providers),
                (
                    "--clip-dir",
                    str(Path(o.clip_dir).expanduser().resolve()) if o.clip_dir else None,
                ),
            ):
                if value:
                    extra += [flag, value]
            if not o.providers:
                # The embedded default runs on what the machine has, CPU included, quietly;
                # an explicit --providers is held to its word.
                extra.append("--allow-cpu-fallback")
        if name == "export" and peers:
            extra += self._peer_arguments()
        for root in command_roots(self.roots):
            extra += ["--allow-root", str(root)]
        service = LocalService(name, extra)
        self.callback(service.stop)
        address = service.start()
        self.local[name] = service
        if name == "export":
            self._export_peers = peers
        return address

    def _peer_arguments(self) -> list[str]:
        """What a local export service is started with: where the services it calls listen
        (local ones started first) and, for remote ones, the credentials this command has."""
        arguments: list[str] = []
        for peer in ("clustering", "inference"):
            endpoint = self.endpoint(peer)
            arguments += [f"--{peer}", endpoint.address]
            if endpoint.token and self.token_file:
                arguments += [f"--{peer}-token-file", str(self.token_file.resolve())]
            if endpoint.tls_ca:
                arguments += [f"--{peer}-tls-ca", str(Path(endpoint.tls_ca).resolve())]
        return arguments

    def _client_options(self, name: str, peers: bool = True) -> ClientOptions:
        """A client's endpoint, and how long its first contact may take: a local service is
        known to be starting (the long window); a remote one that does not answer in
        SETTINGS.connect_timeout_s is reported with what is wrong."""
        endpoint = self.endpoint(name, peers)
        local = name in self.local
        return {
            "endpoint": endpoint,
            "timeout": SETTINGS.connect_timeout_s,
            "wait_for_ready": local,
        }

    def is_local(self, name: str) -> bool:
        return name in self.local

    def endpoint(self, name: str, peers: bool = True) -> Endpoint:
        address = self._address(name, peers)
        local = name in self.local
        return Endpoint(address, None if local else self.token, None if local else self.tls_ca)

    def inference(self) -> InferenceClient:
        if self._inference is None:
            client = InferenceClient(**self._client_options("inference"))
            self.callback(client.close)
            client.wait_ready()
            self._inference = client
        return self._inference

    def clustering(self) -> ClusteringClient:
        if self._clustering is None:
            client = ClusteringClient(**self._client_options("clustering"))
            self.callback(client.close)
            client.wait_ready()
            self._clustering = client
        return self._clustering

    def address(self, name: str) -> str:
        """The address of a service, starting it locally if need be."""
        return self.endpoint(name).address

    def export(self, peers: bool = True) -> ExportClient:
        """The export service's client. `peers` False: the job calls neither the clustering
        nor the inference service (report, merge, restore, cut), so a local export service
        is started without them, and no model pack is needed; a later job that calls them
        gets a local export service that has them."""
        if self._export is None or (peers and self.is_local("export") and not self._export_peers):
            client = ExportClient(**self._client_options("export", peers))
            self.callback(client.close)
            client.wait_ready()
            self._export = client
        return self._export


@contextlib.contextmanager
def services(args: argparse.Namespace, roots: Iterable[Path | None]) -> Iterator[Services]:
    """The services of a command that works on `roots` (see Services)."""
    with Services(ServiceOptions.from_args(args), roots) as opened:
        yield opened
