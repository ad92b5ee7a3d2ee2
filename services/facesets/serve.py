"""`facesets serve inference|clustering|export`: run one service in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import socket
import threading
import time
from pathlib import Path

import facesets.shared.blas  # noqa: F401  # isort: skip  # before numpy loads: see its docstring
import structlog

from facesets.client import Endpoint
from facesets.common import settings
from facesets.common.roots import Roots
from facesets.common.security import (
    InsecureListenError,
    TlsFiles,
    check_listen_policy,
)
from facesets.common.server import (
    PortInUseError,
    ServeOptions,
    TlsMaterialError,
    serve_forever,
    start_server,
    tls_credentials,
)
from facesets.shared.config import Config, ConfigError
from facesets.shared.config import find as find_config
from facesets.shared.processes import running
from facesets.shared.tokens import read_token

log = structlog.get_logger(__name__)

PEERS = ("inference", "clustering")  # the services the export service calls
SERVICES = ("clustering", "export", "inference")


def default_address(service: str) -> str:
    """Where `service` listens without --listen (FACESETS_SERVER__<SERVICE>_LISTEN)."""
    return str(getattr(settings.shared().server, f"{service}_listen"))


def _default(cls: type[settings.BaseSettings], *loc: str) -> str:
    """A setting's built-in default for help texts (the parser is built before the
    environment's settings are checked)."""
    value = settings.default(cls, *loc)
    return ",".join(value) if isinstance(value, tuple) else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", choices=SERVICES, help="which service to run")
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
    parser.add_argument(
        "--install-task",
        nargs="?",
        const="register",
        metavar="FILE",
        help="Windows: register a scheduled task that starts this service at logon (or boot, "
        "--task-trigger) with the config file in use, restarted when it fails; with FILE, "
        "write the task definition (XML) there instead (- prints it), to register it with "
        "`schtasks /Create /TN facesets\\inference /XML FILE`",
    )
    parser.add_argument(
        "--task-trigger", choices=("logon", "boot"), default="logon",
        help="when the scheduled task starts the service (default logon: DirectML runs in "
        "the user's session)",
    )  # fmt: skip
    # A command's local service: flags only (no facesets.toml, no FACESETS_* keys), and it
    # stops when the command that started it is gone.
    parser.add_argument("--no-config", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
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
        f"{_default(settings.InferenceSettings, 'model_root')})",
    )
    inference.add_argument(
        "--model-pack",
        help=f"model pack (FACESETS_MODEL_PACK; default "
        f"{_default(settings.InferenceSettings, 'model_pack')})",
    )
    inference.add_argument(
        "--providers",
        help="execution providers in preference order, e.g. dml,cpu (default "
        f"{_default(settings.InferenceSettings, 'runtime', 'providers')}); the ones this machine "
        "lacks are skipped, CPU is the last fallback. An accelerator (dml, cuda) first, or by "
        "default an accelerator build of ONNX Runtime installed (onnxruntime-directml, "
        "onnxruntime-gpu), asks for that accelerator: without it the service says why and exits",
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
        f"free for other work (FACESETS_RUNTIME__IMAGE_WORKERS; default: one per usable core, "
        f"{settings.usable_cores()} here)",
    )
    inference.add_argument(
        "--clip-dir",
        type=Path,
        help="the CLIP folder ClipScore runs from, made by `facesets clip export` "
        "(FACESETS_CLIP_DIR; default CLIP_CACHE/onnx/CLIP_MODEL--CLIP_PRETRAINED)",
    )
    inference.add_argument(
        "--clip-model",
        help="open_clip architecture of the default CLIP folder (FACESETS_CLIP_MODEL; default "
        f"{_default(settings.InferenceSettings, 'clip', 'model')})",
    )
    inference.add_argument(
        "--clip-pretrained",
        help="open_clip pretrained tag or checkpoint file of the default CLIP folder "
        f"(FACESETS_CLIP_PRETRAINED; default "
        f"{_default(settings.InferenceSettings, 'clip', 'pretrained')})",
    )
    inference.add_argument(
        "--clip-cache",
        type=Path,
        help="folder holding exported CLIP folders under onnx/ (FACESETS_CLIP_CACHE; default "
        f"MODEL_ROOT/{_default(settings.InferenceSettings, 'clip', 'cache_subdir')})",
    )
    inference.add_argument(
        "--max-image-pixels",
        type=int,
        help="refuse images with more pixels than this (decompression bombs; "
        "FACESETS_DECODE__MAX_IMAGE_PIXELS, default "
        f"{settings.default(settings.InferenceSettings, 'decode', 'max_image_pixels'):,})",
    )
    inference.add_argument(
        "--max-decode-bytes",
        type=int,
        help="memory (bytes) that image decodes may hold at once, estimated from each image's "
        "header: a large decode waits for room, an image whose decode alone needs more is "
        "refused with an error result (FACESETS_DECODE__MAX_DECODE_BYTES, default "
        f"{settings.default(settings.InferenceSettings, 'decode', 'max_decode_bytes'):,})",
    )


def run(args: argparse.Namespace) -> int:
    # A bad FACESETS_* setting ends here, named, before anything starts.
    try:
        settings.check()
    except settings.SettingsError as error:
        raise SystemExit(f"error: {error}") from None
    if args.install_task:
        from facesets import windows_task

        try:
            found = find_config(getattr(args, "facesets_config", None))
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from error
        xml = windows_task.task_xml(found, args.service, args.task_trigger)
        return windows_task.install(xml, args.install_task)
    if args.exit_with_parent:
        exit_with_parent(args.exit_with_parent)
    if not args.no_config:
        try:
            apply_config(args, Config.load(getattr(args, "facesets_config", None)))
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from error
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    # A root may be a folder or one file (a store), and need not exist yet (an output folder).
    roots = Roots(args.allow_root)
    log.info("allowed roots", roots=[str(r) for r in roots.roots] or "none")
    options = ServeOptions(
        listen=args.listen or default_address(args.service),
        token=read_token(args.token_file),
        tls=TlsFiles(args.tls_cert, args.tls_key) if args.tls_cert else None,
        ready_file=args.ready_file,
    )
    # Before any model is read: a refused address or TLS material that does not load end at
    # once, not after the seconds a model load takes.
    try:
        check_listen_policy(options.listen, options.token, options.tls)
        if options.tls is not None:
            tls_credentials(options.tls)
        return _serve(args, options, roots)
    except (InsecureListenError, PortInUseError, TlsMaterialError) as error:
        raise SystemExit(f"error: {error}") from error


def apply_config(args: argparse.Namespace, config: Config) -> None:
    """Fill what no flag gave from the environment (FACESETS_*) or facesets.toml."""

    def path(value: object) -> Path | None:
        return Path(str(value)) if value else None

    args.listen = config.get(f"{args.service}_listen", args.listen)
    args.token_file = path(config.get("token_file", args.token_file))
    args.tls_cert = path(config.get("tls_cert", args.tls_cert))
    args.tls_key = path(config.get("tls_key", args.tls_key))
    if not args.allow_root:
        args.allow_root = [Path(root) for root in config.get("roots") or []]
    if args.service == "inference":
        args.model_root = path(config.get("model_root", args.model_root))
        args.model_pack = config.get("model_pack", args.model_pack)
        args.providers = config.get("providers", args.providers)
        args.clip_dir = path(config.get("clip_dir", args.clip_dir))
        args.workers = config.get("workers", args.workers)
    if args.service == "export":
        # The peers a household's export service calls share its token file and CA.
        for peer in PEERS:
            setattr(args, peer, config.get(peer, getattr(args, peer)))
            if not getattr(args, peer):
                continue
            for suffix, key in (("token_file", "token_file"), ("tls_ca", "tls_ca")):
                name = f"{peer}_{suffix}"
                setattr(args, name, path(config.get(key, getattr(args, name))))


def exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """SIGTERM to this process (a clean stop) once process `parent`, the command that started
    it, is gone: it no longer runs, or this process was re-parented. Works whichever thread of
    the parent started it, and where PR_SET_PDEATHSIG does not exist."""
    direct = os.getppid() == parent

    def gone() -> bool:
        return (direct and os.getppid() != parent) or not running(parent)

    def watch() -> None:
        while not gone():
            time.sleep(poll_s)
        log.warning("the command that started this service is gone; stopping", parent=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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

    base = settings.inference()
    workers = base.runtime.image_workers if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    for flag in ("max_image_pixels", "max_decode_bytes"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be at least 1")

    def given(**values: object) -> dict[str, object]:
        return {name: value for name, value in values.items() if value is not None}

    def expanded(path: Path | None) -> Path | None:
        return path.expanduser() if path else None

    # The flags given, over the settings (FACESETS_*).
    clip_dir = args.clip_dir.expanduser().resolve() if args.clip_dir else None
    config = base.model_copy(
        update={
            **given(model_root=expanded(args.model_root), model_pack=args.model_pack or None),
            "clip": base.clip.model_copy(
                update=given(
                    model=args.clip_model or None,
                    pretrained=args.clip_pretrained or None,
                    cache=expanded(args.clip_cache),
                    dir=clip_dir,
                )
            ),
            "runtime": base.runtime.model_copy(
                update={"providers": choice.order, "image_workers": workers}
            ),
            "decode": base.decode.model_copy(
                update=given(
                    max_image_pixels=args.max_image_pixels,
                    max_decode_bytes=args.max_decode_bytes,
                )
            ),
        }
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


def main(argv: list[str] | None = None) -> int:
    """`facesets-serve SERVICE ...`: the same as `facesets serve`, for machines that run the
    services without the command line tool."""
    from facesets.shared import logs

    parser = argparse.ArgumentParser(prog="facesets-serve", description=COMMANDS["serve"][0])
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines")
    parser.add_argument(
        "--config",
        dest="facesets_config",
        type=Path,
        help="facesets.toml to read (default: $FACESETS_CONFIG, else the user's config folder)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level, json=args.log_json)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
