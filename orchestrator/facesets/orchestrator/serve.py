"""`facesets serve inference|clustering|export`: run one service in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
import socket
from pathlib import Path

import structlog

from facesets.client import Endpoint
from facesets.common import settings
from facesets.common.roots import Roots
from facesets.common.security import TlsFiles, read_token
from facesets.common.server import (
    PortInUseError,
    ServeOptions,
    TlsMaterialError,
    serve_forever,
    start_server,
    tls_credentials,
)

log = structlog.get_logger(__name__)

PEERS = ("inference", "clustering")  # the services the export service calls
DEFAULT_ADDRESSES = {
    "inference": settings.DEFAULT_INFERENCE_ADDRESS,
    "clustering": settings.DEFAULT_CLUSTERING_ADDRESS,
    "export": settings.DEFAULT_EXPORT_ADDRESS,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", choices=sorted(DEFAULT_ADDRESSES), help="which service to run")
    parser.add_argument(
        "--listen",
        help="HOST:PORT to listen on (default: the service's "
        "loopback port; port 0 picks a free one)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="require this bearer token from clients; "
        "needed to listen beyond loopback unless TLS is used",
    )
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    peers = parser.add_argument_group(
        "export service: the services it calls",
        "The export service reads faces from the clustering service and checks each crop with "
        "the inference service, at these addresses only (a request cannot name others). Each "
        "peer gets its own credentials: a token file and/or the CA of its TLS certificate.",
    )
    for peer in PEERS:
        peers.add_argument(
            f"--{peer}",
            metavar="HOST:PORT" + ("[,HOST:PORT...]" if peer == "inference" else ""),
            help=f"address of the {peer} service"
            + (" (several: replicas, balanced round-robin)" if peer == "inference" else ""),
        )
        peers.add_argument(
            f"--{peer}-token-file", type=Path, help=f"bearer token sent to the {peer} service"
        )
        peers.add_argument(
            f"--{peer}-tls-ca", type=Path, help=f"CA certificate (PEM) of the {peer} service"
        )
    parser.add_argument(
        "--allow-root",
        metavar="DIR",
        type=Path,
        action="append",
        default=[],
        help="a folder whose files requests may name (images to read, stores, output folders); "
        "repeat for several. Every path a request names must be absolute and resolve, symlinks "
        "included, inside one of them. Without any, the service uses no file a request names "
        "(commands that start their own services pass the folders they work on)",
    )
    inference = parser.add_argument_group("inference service")
    inference.add_argument(
        "--replica-name",
        help="this replica's name in results and summaries (default: HOST:PORT it serves on)",
    )
    inference.add_argument(
        "--model-root",
        type=Path,
        help=f"folder holding models/PACK (FACESETS_MODEL_ROOT; default "
        f"{settings.DEFAULT_MODEL_ROOT})",
    )
    inference.add_argument(
        "--model-pack",
        help=f"model pack (FACESETS_MODEL_PACK; default {settings.DEFAULT_MODEL_PACK})",
    )
    inference.add_argument(
        "--providers",
        help="execution providers in preference order, e.g. dml,cpu (default "
        f"{','.join(settings.PROVIDER_ORDER)}); the ones this machine lacks are skipped, CPU is "
        "the last fallback. An accelerator (dml, cuda) first, or by default an accelerator build "
        "of ONNX Runtime installed (onnxruntime-directml, onnxruntime-gpu), asks for that "
        "accelerator: without it the service says why and exits",
    )
    inference.add_argument(
        "--allow-cpu-fallback",
        action="store_true",
        help="run on the CPU (with a warning) when the accelerator asked for is not available",
    )
    inference.add_argument(
        "--workers",
        type=int,
        help="images decoded, detected and (on CPU) embedded at once; fewer leaves cores "
        f"free for other work (default: one per usable core, {settings.IMAGE_WORKERS} here)",
    )
    inference.add_argument(
        "--clip-model",
        help="open_clip architecture for ClipScore (FACESETS_CLIP_MODEL; default "
        f"{settings.CLIP_MODEL})",
    )
    inference.add_argument(
        "--clip-pretrained",
        help="open_clip pretrained tag or a checkpoint file for ClipScore "
        f"(FACESETS_CLIP_PRETRAINED; default {settings.CLIP_PRETRAINED})",
    )
    inference.add_argument(
        "--clip-cache",
        type=Path,
        help="folder of CLIP weights, their exported ONNX towers and custom architecture "
        f"configs (model_configs/NAME.json); default MODEL_ROOT/{settings.CLIP_CACHE_SUBDIR}",
    )
    inference.add_argument(
        "--max-image-pixels",
        type=int,
        default=settings.MAX_IMAGE_PIXELS,
        help="refuse images with more pixels than this (decompression bombs)",
    )
    inference.add_argument(
        "--max-decode-bytes",
        type=int,
        default=settings.MAX_DECODE_BYTES,
        help="memory (bytes) that image decodes may hold at once, estimated from each image's "
        "header: a large decode waits for room, an image whose decode alone needs more is "
        f"refused with an error result (default {settings.MAX_DECODE_BYTES:,})",
    )


def run(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    # A root may be a folder or one file (a store), and need not exist yet (an output folder).
    roots = Roots(args.allow_root)
    log.info("allowed roots", roots=[str(r) for r in roots.roots] or "none")
    options = ServeOptions(
        listen=args.listen or DEFAULT_ADDRESSES[args.service],
        token=read_token(args.token_file),
        tls=TlsFiles(args.tls_cert, args.tls_key) if args.tls_cert else None,
        ready_file=args.ready_file,
    )
    try:
        if options.tls:  # before any model loads: bad material is told at once
            tls_credentials(options.tls)
        return _serve(args, options, roots)
    except (PortInUseError, TlsMaterialError) as error:
        raise SystemExit(f"error: {error}") from error


def _serve(args: argparse.Namespace, options: ServeOptions, roots: Roots) -> int:
    if args.service == "inference":
        return _serve_inference(args, options, roots)
    if args.service == "clustering":
        from facesets.clustering import servicer as clustering

        clustering_servicer = clustering.ClusteringServicer(roots)
        running = start_server(
            options, clustering.register(clustering_servicer), [clustering.SERVICE_NAME]
        )
        serve_forever(running)
        clustering_servicer.stores.close()
    else:
        from facesets.export import servicer as export

        export_servicer = export.ExportServicer(
            clustering=_peer(args, "clustering"), inference=_peer(args, "inference"), roots=roots
        )
        running = start_server(options, export.register(export_servicer), [export.SERVICE_NAME])
        serve_forever(running)
    return 0


def _peer(args: argparse.Namespace, name: str) -> Endpoint | None:
    """Where the export service finds a peer, with the credentials given for it."""
    address = getattr(args, name)
    token_file = getattr(args, f"{name}_token_file")
    tls_ca = getattr(args, f"{name}_tls_ca")
    if not address:
        if token_file or tls_ca:
            raise SystemExit(f"--{name}-token-file and --{name}-tls-ca need --{name}")
        return None
    return Endpoint(address, read_token(token_file), tls_ca)


def replica_name(address: str) -> str:
    """HOST:PORT a replica serves on; a wildcard host is replaced by the machine's name."""
    host, port = address.rsplit(":", 1)
    if host.strip("[]") in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"{host}:{port}"


def _refuse_or_warn(problem: str, allow_cpu_fallback: bool) -> None:
    """A missing accelerator stops the service unless the CPU was allowed; never silent."""
    if not allow_cpu_fallback:
        raise SystemExit(
            f"error: {problem}\nOr pass --allow-cpu-fallback to run on the CPU, several times "
            "slower."
        )
    log.warning("running on the CPU: the accelerator asked for is not available", why=problem)


def _missing_dependency(error: ImportError) -> SystemExit:
    from facesets.inference.runtime import install_command

    return SystemExit(
        f"error: the inference service cannot start: {error}.\nInstall its dependencies with:\n"
        f"    {install_command('cpu')}\n(or 'directml' for DirectML on Windows, 'cuda' for CUDA)"
    )


def _serve_inference(args: argparse.Namespace, options: ServeOptions, roots: Roots) -> int:
    try:
        from facesets.inference.session import choose_providers
    except ImportError as error:
        raise _missing_dependency(error) from error
    explicit = tuple(p for p in args.providers.split(",") if p.strip()) if args.providers else None
    choice = choose_providers(explicit)
    log.info(
        "execution providers chosen",
        order=list(choice.order),
        chosen=list(choice.chosen),
        wanted=choice.wanted.provider if choice.wanted else None,
        onnxruntime=choice.install.described(),
    )
    if choice.problem:
        _refuse_or_warn(choice.problem, args.allow_cpu_fallback)
    try:
        from facesets.inference import servicer as inference
    except ImportError as error:
        raise _missing_dependency(error) from error

    workers = settings.IMAGE_WORKERS if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.max_decode_bytes < 1:
        raise SystemExit("--max-decode-bytes must be at least 1")
    config = settings.InferenceSettings(
        **({"model_root": args.model_root} if args.model_root else {}),
        **({"model_pack": args.model_pack} if args.model_pack else {}),
        **({"clip_model": args.clip_model} if args.clip_model else {}),
        **({"clip_pretrained": args.clip_pretrained} if args.clip_pretrained else {}),
        **({"clip_cache": args.clip_cache} if args.clip_cache else {}),
        providers=choice.order,
        max_image_pixels=args.max_image_pixels,
        image_workers=workers,
        max_decode_bytes=args.max_decode_bytes,
    )
    servicer = inference.build(config, choice=choice, roots=roots)

    def name_replica(address: str) -> None:
        servicer.replica = args.replica_name or replica_name(address)

    options = dataclasses.replace(options, on_bound=name_replica)
    problem = choice.check_in_use(servicer.pack.providers)
    if problem:
        _refuse_or_warn(problem, args.allow_cpu_fallback)
    log.info("execution providers in use", providers=servicer.pack.providers)
    running = start_server(options, inference.register(servicer), [inference.SERVICE_NAME])
    serve_forever(running, on_stop=servicer.stop)
    return 0


COMMANDS = {
    "serve": (
        "run one service (inference, clustering or export) in the foreground",
        add_arguments,
        run,
    )
}
