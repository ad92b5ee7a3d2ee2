"""`facesets serve inference|clustering|export`: run one service in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from facesets.common import settings
from facesets.common.security import TlsFiles, read_token
from facesets.common.server import ServeOptions, serve_forever, start_server

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
    inference = parser.add_argument_group("inference service")
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
        default=",".join(settings.PROVIDER_ORDER),
        help="execution providers in preference order (dml,cuda,cpu); the "
        "ones this machine lacks are skipped, CPU is the last fallback",
    )
    inference.add_argument(
        "--workers",
        type=int,
        help="images decoded, detected and (on CPU) embedded at once; fewer leaves cores "
        f"free for other work (default: one per usable core, {settings.IMAGE_WORKERS} here)",
    )
    inference.add_argument(
        "--max-image-pixels",
        type=int,
        default=settings.MAX_IMAGE_PIXELS,
        help="refuse images with more pixels than this (decompression bombs)",
    )


def run(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    options = ServeOptions(
        listen=args.listen or DEFAULT_ADDRESSES[args.service],
        token=read_token(args.token_file),
        tls=TlsFiles(args.tls_cert, args.tls_key) if args.tls_cert else None,
        ready_file=args.ready_file,
    )
    if args.service == "inference":
        from facesets.inference import servicer as inference

        workers = settings.IMAGE_WORKERS if args.workers is None else args.workers
        if workers < 1:
            raise SystemExit("--workers must be at least 1")
        config = settings.InferenceSettings(
            **({"model_root": args.model_root} if args.model_root else {}),
            **({"model_pack": args.model_pack} if args.model_pack else {}),
            providers=tuple(p for p in args.providers.split(",") if p),
            max_image_pixels=args.max_image_pixels,
            image_workers=workers,
        )
        inference_servicer = inference.build(config)
        running = start_server(
            options, inference.register(inference_servicer), [inference.SERVICE_NAME]
        )
        serve_forever(running, on_stop=inference_servicer.stop)
    elif args.service == "clustering":
        from facesets.clustering import servicer as clustering

        clustering_servicer = clustering.ClusteringServicer()
        running = start_server(
            options, clustering.register(clustering_servicer), [clustering.SERVICE_NAME]
        )
        serve_forever(running)
        clustering_servicer.stores.close()
    else:
        from facesets.export import servicer as export

        export_servicer = export.ExportServicer(token=options.token)
        running = start_server(options, export.register(export_servicer), [export.SERVICE_NAME])
        serve_forever(running)
    return 0


COMMANDS = {
    "serve": (
        "run one service (inference, clustering or export) in the foreground",
        add_arguments,
        run,
    )
}
