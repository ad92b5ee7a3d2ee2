"""`facesets doctor`: one line per check of this machine (and a remote inference service)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from facesets.inference.runtime import OrtInstall
from facesets.orchestrator import settings as cli_settings
from facesets.orchestrator.settings import SETTINGS
from facesets.shared.tokens import read_token

OK, INFO, WARN, ERROR = "ok", "info", "warn", "error"
REMOTE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    level: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.level.upper():<5}  {self.name}: {self.detail}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _fix_target(install: OrtInstall) -> str:
    from facesets.inference.runtime import ACCELERATORS

    names = {name for name, _ in install.distributions}
    for accelerator in ACCELERATORS:
        if accelerator.distribution in names:
            return accelerator.install_target
    return "cpu"


def onnxruntime_checks(install: OrtInstall, local_level: str) -> Iterator[Check]:
    """`local_level` is what a problem of the local inference install counts as: an error
    where the local service would run, a warning where inference is remote."""
    from facesets.inference.runtime import (
        ACCELERATORS,
        CPU,
        accelerator_by_provider,
        install_command,
    )

    fix = f"fix: {install_command(_fix_target(install))}"
    if not install.distributions:
        yield Check(local_level, "onnxruntime", f"no ONNX Runtime distribution installed; {fix}")
    elif len(install.distributions) > 1:
        yield Check(
            local_level,
            "onnxruntime",
            f"{len(install.distributions)} distributions installed ({install.described()}); "
            f"they overwrite each other's files, keep one; {fix}",
        )
    else:
        yield Check(OK, "onnxruntime", f"{install.described()} (one distribution)")
    if install.import_error:
        yield Check(
            local_level, "providers", f"onnxruntime does not import: {install.import_error}"
        )
        return
    offered = [p for p in install.available if p == CPU or accelerator_by_provider(p)]
    names = {name for name, _ in install.distributions}
    missing = [
        a for a in ACCELERATORS if a.distribution in names and a.provider not in install.available
    ]
    if missing:
        yield Check(
            local_level,
            "providers",
            f"{', '.join(install.available) or 'none'}: {missing[0].distribution} is installed "
            f"but {missing[0].label} ({missing[0].provider}) is not offered; {fix}",
        )
    elif any(accelerator_by_provider(p) for p in offered):
        yield Check(OK, "providers", ", ".join(offered))
    else:
        yield Check(OK, "providers", f"{', '.join(offered) or 'none'} (no accelerator: CPU only)")


def insightface_check(install: OrtInstall, local_level: str) -> Check:
    from facesets.inference.runtime import install_command

    version = _version("insightface")
    if version is None:
        fix = install_command(_fix_target(install))
        return Check(local_level, "insightface", f"not installed; fix: {fix}")
    return Check(OK, "insightface", version)


def model_pack_check(model_root: Path, pack: str, local_level: str) -> Check:
    folder = model_root.expanduser() / "models" / pack
    files = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
    if not files:
        return Check(
            local_level,
            "model pack",
            f"'{pack}' not found: no .onnx files in {folder} (InsightFace fetches its own packs "
            "there on first use where the network allows; --model-root/--model-pack or "
            "FACESETS_MODEL_ROOT/FACESETS_MODEL_PACK choose another)",
        )
    listed = ", ".join(f"{f.name} ({f.stat().st_size / 1e6:.1f} MB)" for f in files)
    return Check(OK, "model pack", f"{pack} in {folder}: {listed}")


def clip_check(model_root: Path, clip_dir: Path | None, local_level: str) -> Check:
    """The exported CLIP folder a local inference service would score with (`occlusion`)."""
    from facesets.common import settings
    from facesets.inference.clip_folder import (
        ClipUnavailable,
        export_command,
        read_meta,
        spec_of,
    )

    try:
        config = settings.inference().model_copy(update={"model_root": model_root.expanduser()})
    except settings.SettingsError as error:  # a FACESETS_* value that is not one
        return Check(local_level, "CLIP", str(error))
    if clip_dir is not None:  # as `serve inference --clip-dir` takes it
        clip = config.clip.model_copy(update={"dir": clip_dir.expanduser().resolve()})
        config = config.model_copy(update={"clip": clip})
    spec = spec_of(config)
    folder = spec.export_dir()
    level = WARN if local_level == ERROR else INFO  # occlusion alone needs it
    if not folder.is_dir() or not any(folder.iterdir()):
        return Check(
            level,
            "CLIP",
            f"no exported CLIP model in {folder}: `facesets occlusion` needs one. Make it on a "
            f"machine with torch (pip install 'facesets[clip-export]') with "
            f"`{export_command(spec.model, spec.pretrained, folder)}` and copy the folder here, "
            "or name another with --clip-dir / FACESETS_CLIP_DIR",
        )
    try:
        meta = read_meta(folder)
    except ClipUnavailable as error:
        return Check(
            level,
            "CLIP",
            f"{error}; `facesets occlusion` needs a whole export "
            f"(`{export_command(spec.model, spec.pretrained, folder)}`)",
        )
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return Check(
        OK,
        "CLIP",
        f"{meta.model} / {meta.pretrained} in {folder} ({size / 1e6:.1f} MB)",
    )


def ffmpeg_check() -> Check:
    path = shutil.which("ffmpeg")
    if path is None:
        return Check(WARN, "ffmpeg", "not found on PATH (video work needs it)")
    try:
        first = subprocess.run(
            [path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=20
        ).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check(ERROR, "ffmpeg", f"{path} does not run: {error}")
    return Check(OK, "ffmpeg", f"{first[0] if first else 'unknown version'} ({path})")


def child_death_check() -> Check | None:
    """Linux: util-linux's setpriv, through which the export service asks the kernel to kill
    its ffmpeg when the service itself is killed. None elsewhere (nothing to check)."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("setpriv")
    if path is None:
        return Check(
            WARN,
            "setpriv",
            "not found on PATH (util-linux): an export service killed mid-cut leaves its "
            "ffmpeg to finish alone",
        )
    return Check(OK, "setpriv", f"{path}: ffmpeg ends with a killed export service")


def remote_checks(address: str, token: str | None, tls_ca: Path | None) -> Iterator[Check]:
    from facesets.client.channel import (
        Endpoint,
        TokenRefusedError,
        open_channel,
        wait_until_serving,
    )
    from facesets.v1 import inference_pb2, inference_pb2_grpc

    name = f"inference at {address}"
    channel = open_channel(Endpoint(address, token, tls_ca))
    try:
        try:
            wait_until_serving(channel, "facesets.v1.Inference", REMOTE_TIMEOUT_S)
        except TokenRefusedError as error:
            yield Check(OK, name, "reachable, serving")
            why = "refused" if token else "needed: pass --token-file"
            yield Check(ERROR, "token", f"{why} ({error.cause})")
            return
        except ConnectionError as error:
            yield Check(ERROR, name, f"not reachable: {error}")
            return
        yield Check(OK, name, "reachable, serving")
        try:
            info = inference_pb2_grpc.InferenceStub(channel).GetInfo(
                inference_pb2.GetInfoRequest(), timeout=REMOTE_TIMEOUT_S
            )
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                why = "refused" if token else "needed: pass --token-file"
                yield Check(ERROR, "token", f"{why} ({error.details()})")
            else:
                yield Check(ERROR, "token", f"GetInfo failed: {error.code().name}")
            return
        yield Check(OK, "token", "accepted" if token else "none needed")
        in_use = list(info.providers)
        runtime = f"{info.onnxruntime_distribution} {info.onnxruntime_version}".strip()
        detail = f"{', '.join(in_use)} ({runtime or 'ONNX Runtime not reported'})"
        if len(info.onnxruntime_distributions) > 1:
            yield Check(
                ERROR,
                "remote providers",
                f"{detail}; {len(info.onnxruntime_distributions)} ONNX Runtime distributions "
                f"installed there ({', '.join(info.onnxruntime_distributions)})",
            )
        elif all(p == "CPUExecutionProvider" for p in in_use):
            yield Check(WARN, "remote providers", f"{detail}: runs on the CPU only")
        else:
            yield Check(OK, "remote providers", detail)
    finally:
        channel.close()


def local_inference_checks(args: argparse.Namespace, local_level: str) -> Iterator[Check]:
    """The inference install of this machine, which the embedded default runs on (runtime,
    model pack, CLIP folder): it comes with the services distribution, which a machine that
    only calls remote services lacks."""
    try:
        from facesets.inference.runtime import probe
    except ImportError as missing:
        yield Check(
            local_level,
            "services",
            f"not installed here ({missing}); the embedded default needs them: "
            "pip install 'facesets[embedded]' (or pass the addresses of running services)",
        )
        return
    install = probe()
    yield from onnxruntime_checks(install, local_level)
    yield insightface_check(install, local_level)
    # What a local inference service would be started with: the flag, else FACESETS_*, else
    # facesets.toml (as ServiceOptions reads them), else the command's defaults.
    config = cli_settings.CONFIG
    model_root = config.get("model_root", args.model_root) or SETTINGS.model_root
    pack = config.get("model_pack", args.model_pack) or SETTINGS.model_pack
    clip_dir = config.get("clip_dir", args.clip_dir)
    yield model_pack_check(Path(model_root), str(pack), local_level)
    yield clip_check(Path(model_root), Path(clip_dir) if clip_dir else None, local_level)


def checks(args: argparse.Namespace) -> Iterator[Check]:
    remote = bool(args.inference)
    local_level = WARN if remote else ERROR
    yield from local_inference_checks(args, local_level)
    yield ffmpeg_check()
    death = child_death_check()
    if death is not None:
        yield death
    if remote:
        token_file = cli_settings.CONFIG.get("token_file", args.token_file)
        token = read_token(Path(token_file)) if token_file else None
        yield from remote_checks(args.inference, token, args.tls_ca)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inference", metavar="HOST:PORT", help="also check this inference service"
    )
    parser.add_argument("--token-file", type=Path, help="its bearer token (FACESETS_TOKEN_FILE)")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) of a TLS service")
    parser.add_argument("--model-root", type=Path, help="folder holding models/PACK")
    parser.add_argument("--model-pack", help="model pack name")
    parser.add_argument(
        "--clip-dir", type=Path, help="the exported CLIP folder to check (FACESETS_CLIP_DIR)"
    )


def run(args: argparse.Namespace) -> int:
    errors = 0
    for check in checks(args):
        print(check.line(), flush=True)
        errors += check.level == ERROR
    return 1 if errors else 0


COMMANDS = {
    "doctor": (
        "check this machine's install (ONNX Runtime, providers, model pack, CLIP, ffmpeg) and, "
        "with --inference, a remote inference service; one line per check, exit 1 on an error",
        add_arguments,
        run,
    )
}
