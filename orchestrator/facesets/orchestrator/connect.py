"""Clients for the services a command needs: remote when an address is given, local otherwise."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from facesets.client import ClusteringClient, Endpoint, ExportClient, InferenceClient
from facesets.common.security import read_token
from facesets.orchestrator.local import LocalService
from facesets.orchestrator.roots import command_roots


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


class Services(contextlib.ExitStack):
    """Opens clients lazily; a local service is started the first time it is needed.

    `roots`: the files and folders the command works on (sources, store, outputs); a local
    service may use those alone (`facesets serve --allow-root`), plus the folders of the photos
    a listed store holds. Remote services keep the roots they were started with.
    """

    def __init__(self, args: argparse.Namespace, roots: Iterable[Path | None] = ()) -> None:
        super().__init__()
        self.args = args
        self.roots = list(roots)
        token_file = getattr(args, "token_file", None) or os.environ.get("FACESETS_TOKEN_FILE")
        self.token_file = Path(token_file) if token_file else None
        self.token = read_token(self.token_file) if self.token_file else None
        self.tls_ca = getattr(args, "tls_ca", None)
        self._inference: InferenceClient | None = None
        self._clustering: ClusteringClient | None = None
        self._export: ExportClient | None = None
        self.local: dict[str, LocalService] = {}

    def _address(self, name: str) -> str:
        address = getattr(self.args, name, None)
        if address:
            return address
        if name in self.local:
            return self.local[name].address
        extra: list[str] = []
        if name == "inference":
            for flag in ("model_root", "model_pack", "providers"):
                value = getattr(self.args, flag, None)
                if value:
                    extra += [f"--{flag.replace('_', '-')}", str(value)]
            if not getattr(self.args, "providers", None):
                # The embedded default runs on what the machine has, CPU included, quietly;
                # an explicit --providers is held to its word.
                extra.append("--allow-cpu-fallback")
        if name == "export":
            extra += self._peer_arguments()
        for root in command_roots(self.roots):
            extra += ["--allow-root", str(root)]
        service = LocalService(name, extra)
        self.callback(service.stop)
        address = service.start()
        self.local[name] = service
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

    def is_local(self, name: str) -> bool:
        return name in self.local

    def endpoint(self, name: str) -> Endpoint:
        address = self._address(name)
        local = name in self.local
        return Endpoint(address, None if local else self.token, None if local else self.tls_ca)

    def inference(self) -> InferenceClient:
        if self._inference is None:
            client = InferenceClient(self.endpoint("inference"))
            self.callback(client.close)
            client.wait_ready()
            self._inference = client
        return self._inference

    def clustering(self) -> ClusteringClient:
        if self._clustering is None:
            client = ClusteringClient(self.endpoint("clustering"))
            self.callback(client.close)
            client.wait_ready()
            self._clustering = client
        return self._clustering

    def address(self, name: str) -> str:
        """The address of a service, starting it locally if need be."""
        return self.endpoint(name).address

    def export(self) -> ExportClient:
        if self._export is None:
            client = ExportClient(self.endpoint("export"))
            self.callback(client.close)
            client.wait_ready()
            self._export = client
        return self._export


@contextlib.contextmanager
def services(args: argparse.Namespace, roots: Iterable[Path | None]) -> Iterator[Services]:
    """The services of a command that works on `roots` (see Services)."""
    with Services(args, roots) as opened:
        yield opened
