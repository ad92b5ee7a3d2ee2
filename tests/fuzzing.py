"""Fuzzing the services and the decoder with hypothesis.

One target per RPC of every service, fed requests built from the request type's descriptor
(every field, nested messages, repeated fields, out-of-range enums and numbers, strings that
name real and missing files inside a sandbox, damaged and hostile image bytes), sent to real
running services; and the decoder, in-process, fed damaged real images. A finding is a call
that ends UNKNOWN or INTERNAL (an unhandled exception), DEADLINE_EXCEEDED (a hung worker) or
UNAVAILABLE (a dead service); an answer or error that holds bytes of a file the request named;
a decoder error other than DecodeError. Every string a request holds is an absolute path inside
the sandbox, so nothing is written elsewhere.

The planted mode (tests/fuzz_planted.py; targets named `planted:SERVICE.METHOD`) plants hostile
files instead: export folders and stores with manifests pointing out of the root, symlinked
subfolders, FIFOs, hard links, truncated files; every maintenance, report, export and
clustering RPC runs over them, and a sentinel tree beside the root must not change. The
services may use one root only (--allow-root), which the sentinel tree is not in.

`make fuzz` runs both (FUZZ_SECONDS per target), `make test` runs a short deterministic pass
(tests/test_fuzz.py). Run by hand: python tests/fuzzing.py --seconds 30 [--only NAME]
[--mode fields|planted|both].
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from facesets.common.decode import DecodeBudget, DecodeError, decode
from facesets.v1 import clustering_pb2, export_pb2, inference_pb2, inference_pb2_grpc

if TYPE_CHECKING:
    from fuzz_planted import PlantedSetup

    from services import ServiceProcess

SECRET = b"FACESETS-FUZZ-SECRET-7f3a9c"
CALL_TIMEOUT_S = 20.0
MAX_ANSWERS = 50  # answers read from a response stream
BAD_CODES = {
    grpc.StatusCode.UNKNOWN: "unhandled exception",
    grpc.StatusCode.INTERNAL: "internal error",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer in time (a hung worker?)",
    grpc.StatusCode.UNAVAILABLE: "service unavailable (crashed?)",
}
SERVICES = {
    "inference": inference_pb2.DESCRIPTOR.services_by_name["Inference"],
    "clustering": clustering_pb2.DESCRIPTOR.services_by_name["Clustering"],
    "export": export_pb2.DESCRIPTOR.services_by_name["Export"],
}


@dataclass(frozen=True)
class Finding:
    target: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.target}: {self.kind}: {self.detail[:300]}"


@dataclass
class Report:
    target: str
    executions: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


# --- the sandbox -------------------------------------------------------------------------------
def make_sandbox(root: Path, photo: Path) -> list[str]:
    """Files requests may name, all under root: a photo, a file of secret bytes (one shaped
    like a PPM header), an empty file, a store, folders; returns the paths to draw from."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "photo.jpg").write_bytes(photo.read_bytes())
    (root / "secret.txt").write_bytes(SECRET + b"\n")
    (root / "secret.ppm").write_bytes(b"P6\n" + SECRET + b"\n")
    (root / "empty.jpg").write_bytes(b"")
    for folder in ("out", "facesets", "export"):
        (root / folder).mkdir(exist_ok=True)
    names = ["photo.jpg", "secret.txt", "secret.ppm", "empty.jpg", "store.db", "missing.db"]
    names += ["out", "facesets", "export", "missing/deeper", "out/manifest.json"]
    return [str(root / name) for name in names]


def _path_strategy(root: Path, known: list[str]) -> st.SearchStrategy[str]:
    name = st.text(
        alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=12,
    ).filter(lambda n: n not in (".", ".."))
    return st.one_of(st.sampled_from(["", *known]), name.map(lambda n: f"{root}/{n}"))


def _bytes_strategy(photo: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=64), _damaged(photo), st.just(b"P6\n" + SECRET))


def _damaged(image: bytes) -> st.SearchStrategy[bytes]:
    """A real image cut short, or with a few bytes changed."""

    @st.composite
    def damage(draw: st.DrawFn) -> bytes:
        data = bytearray(image)
        for _ in range(draw(st.integers(0, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(1, len(data)))])

    return damage()


# --- requests from descriptors ---------------------------------------------------------------
_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


class RequestStrategies:
    def __init__(self, paths: st.SearchStrategy[str], data: st.SearchStrategy[bytes]) -> None:
        self.paths = paths
        self.data = data

    def _scalar(self, f: FieldDescriptor) -> st.SearchStrategy[Any]:
        if f.type in _INTS:
            low, high = _INTS[f.type]
            # Small values near the edges, within the field's range (a uint32 takes no -3).
            return st.one_of(st.integers(max(low, -3), 100), st.sampled_from([low, high]))
        if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return st.floats(allow_nan=True, allow_infinity=True, width=32)
        if f.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if f.type == FieldDescriptor.TYPE_STRING:
            return self.paths
        if f.type == FieldDescriptor.TYPE_BYTES:
            return self.data
        if f.type == FieldDescriptor.TYPE_ENUM:
            values = [v.number for v in f.enum_type.values]
            return st.one_of(st.sampled_from(values), st.integers(-2, 1000))
        raise TypeError(f"no strategy for field {f.full_name}")

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = _message_class(descriptor)()
            chosen_oneofs: set[str] = set()
            for f in descriptor.fields:
                if f.containing_oneof is not None:
                    if f.containing_oneof.name in chosen_oneofs or not draw(st.booleans()):
                        continue
                    chosen_oneofs.add(f.containing_oneof.name)
                elif not draw(st.booleans()):
                    continue
                is_message = f.type == FieldDescriptor.TYPE_MESSAGE
                if is_message and f.message_type.GetOptions().map_entry:
                    continue  # no request carries a map
                if f.is_repeated:
                    count = draw(st.integers(0, 3 if depth < 2 else 0))
                    target = getattr(message, f.name)
                    for _ in range(count):
                        if is_message:
                            target.add().CopyFrom(draw(self.message(f.message_type, depth + 1)))
                        else:
                            target.append(draw(self._scalar(f)))
                elif is_message:
                    if depth < 3:
                        getattr(message, f.name).CopyFrom(
                            draw(self.message(f.message_type, depth + 1))
                        )
                else:
                    setattr(message, f.name, draw(self._scalar(f)))
            return message

        return build()


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


# --- calling a service -----------------------------------------------------------------------
def _leaks(text: str | bytes) -> bool:
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return SECRET in raw


def call_once(
    channel: grpc.Channel, service: str, method: MethodDescriptor, requests: list[Message]
) -> Finding | None:
    name = f"{service}.{method.name}"
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = _message_class(method.output_type)
    kind = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    rpc = getattr(channel, kind)(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    argument: Any = iter(requests) if method.client_streaming else requests[0]
    try:
        if method.server_streaming:
            answers = []
            call = rpc(argument, timeout=CALL_TIMEOUT_S)
            for answer in call:
                answers.append(answer)
                if len(answers) >= MAX_ANSWERS:
                    call.cancel()
                    break
        else:
            answers = [rpc(argument, timeout=CALL_TIMEOUT_S)]
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
        if code == grpc.StatusCode.CANCELLED:
            return None  # we cancelled after MAX_ANSWERS
        if code in BAD_CODES:
            return Finding(name, BAD_CODES[code], f"{details} <- {requests!r}")
        if _leaks(details):
            return Finding(name, "file bytes in an error", details)
        return None
    for answer in answers:
        if _leaks(answer.SerializeToString()):
            return Finding(name, "file bytes in an answer", str(answer))
    return None


def fuzz_rpc(
    channel: grpc.Channel,
    service: str,
    method: MethodDescriptor,
    strategies: RequestStrategies,
    seconds: float,
    batch: int,
    first_seed: int = 0,
) -> Report:
    report = Report(f"{service}.{method.name}")
    one = strategies.message(method.input_type)
    requests = st.lists(one, min_size=1, max_size=3) if method.client_streaming else st.tuples(one)
    started = time.monotonic()
    for round_seed in range(first_seed, first_seed + 1_000_000):

        @seed(round_seed)
        @settings(
            max_examples=batch,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(requests)
        def one_batch(drawn: list[Message] | tuple[Message]) -> None:
            report.executions += 1
            finding = call_once(channel, service, method, list(drawn))
            if finding is not None and len(report.findings) < 20:
                report.findings.append(finding)

        one_batch()
        if time.monotonic() - started >= seconds:
            break
    report.seconds = time.monotonic() - started
    return report


# --- the decoder ---------------------------------------------------------------------------
DECODE_BUDGET = 256 * 1024 * 1024
SLOW_DECODE_S = 10.0


def fuzz_decoder(samples: list[bytes], seconds: float, batch: int, first_seed: int = 0) -> Report:
    report = Report("decoder")
    budget = DecodeBudget(DECODE_BUDGET)
    data = st.one_of(*(_damaged(sample) for sample in samples), st.binary(max_size=256))
    started = time.monotonic()
    for round_seed in range(first_seed, first_seed + 1_000_000):

        @seed(round_seed)
        @settings(
            max_examples=batch,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(data)
        def one_batch(blob: bytes) -> None:
            report.executions += 1
            began = time.monotonic()
            try:
                decode(blob, 120_000_000, long_side=1280, budget=budget)
            except DecodeError:
                pass
            except Exception as error:  # anything else would be an INTERNAL per image
                report.findings.append(
                    Finding("decoder", type(error).__name__, f"{error} <- {blob[:40]!r}")
                )
            if time.monotonic() - began > SLOW_DECODE_S:
                report.findings.append(Finding("decoder", "slow decode", repr(blob[:40])))

        one_batch()
        if time.monotonic() - started >= seconds:
            break
    report.seconds = time.monotonic() - started
    return report


def image_samples(photo: Path) -> list[bytes]:
    """The photo as JPEG, plus PNG, WebP and TIFF encodings of it."""
    from PIL import Image

    samples = [photo.read_bytes()]
    image = Image.open(photo).reduce(4)
    for fmt in ("PNG", "WEBP", "TIFF", "GIF"):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        samples.append(buffer.getvalue())
    return samples


# --- running against services ----------------------------------------------------------------
def start_services(work: Path, shared: Path) -> dict[str, ServiceProcess]:
    """The three services, started in parallel, allowed WORK/root only (the sandbox and the
    planted folders lie there; the planted mode's sentinel tree lies beside it, outside). The
    export service calls the other two, so that maintenance jobs run through."""
    from conftest import free_port  # the tests' helpers start real services

    from services import ServiceProcess

    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in SERVICES}
    peers = {name: f"127.0.0.1:{ports[name]}" for name in ("inference", "clustering")}
    extra = {
        "inference": ("--model-root", str(shared), "--model-pack", "facepack-mini",
                      "--workers", "2"),
        "clustering": (),
        "export": ("--inference", peers["inference"], "--clustering", peers["clustering"]),
    }  # fmt: skip
    processes = {
        name: ServiceProcess(name, ports[name], work / f"{name}.log", *extra[name], roots=[root])
        for name in SERVICES
    }
    threads = [threading.Thread(target=p.start) for p in processes.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    warm_up(processes["inference"].address)
    return processes


def warm_up(inference: str) -> None:
    """The first ClipScore imports torch and looks for the weights (absent here): once, with
    time to spare, so that the generated calls meet the answer it then keeps."""
    with grpc.insecure_channel(inference) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        request = inference_pb2.ClipScoreRequest(prompts=["a face"])
        try:
            list(stub.ClipScore(iter([request]), timeout=180))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                raise


def run_all(
    addresses: dict[str, str],
    sandbox: Path,
    photo: Path,
    seconds: float,
    batch: int,
    only: str = "",
    alive: Callable[[], list[str]] | None = None,
    echo: Callable[[str], None] = lambda line: None,
    planted: PlantedSetup | None = None,
    fields: bool = True,
) -> list[Report]:
    """Every target for `seconds` each (in batches of `batch` examples, seeds 0, 1, ...);
    `alive` names the services that died, checked after each target. With `planted`, the
    planted targets run after the field targets (`fields=False`: only they)."""
    reports = []
    if fields:
        reports += _run_fields(addresses, sandbox, photo, seconds, batch, only, alive, echo)
    if planted is not None:
        for service, method in planted_targets():
            target = f"{service}.{method.name}"
            if only and only not in (service, target, f"planted:{target}", "planted"):
                continue
            reports.append(
                run_planted(addresses[service], service, method, planted, seconds, batch, alive)
            )
            echo(_line(reports[-1]))
    return reports


def planted_targets() -> list[tuple[str, MethodDescriptor]]:
    from fuzz_planted import planted_targets as targets

    return targets(SERVICES)


def run_planted(
    address: str,
    service: str,
    method: MethodDescriptor,
    setup: PlantedSetup,
    seconds: float,
    batch: int,
    alive: Callable[[], list[str]] | None = None,
) -> Report:
    """One planted target: `batch` examples per seed until `seconds` pass."""
    from fuzz_planted import fuzz_planted

    report = Report(f"planted:{service}.{method.name}")
    data = _bytes_strategy(setup.photo.read_bytes())
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
    started = time.monotonic()
    try:
        fuzz_planted(
            channel,
            service,
            method,
            setup,
            lambda strings: RequestStrategies(strings, data),
            call_once,
            report,
            Finding,
            seconds,
            batch,
        )
    finally:
        channel.close()
    report.seconds = time.monotonic() - started
    for dead in alive() if alive else []:
        report.findings.append(Finding(report.target, "service died", dead))
    return report


def _run_fields(
    addresses: dict[str, str],
    sandbox: Path,
    photo: Path,
    seconds: float,
    batch: int,
    only: str,
    alive: Callable[[], list[str]] | None,
    echo: Callable[[str], None],
) -> list[Report]:
    paths = _path_strategy(sandbox, make_sandbox(sandbox, photo))
    strategies = RequestStrategies(paths, _bytes_strategy(photo.read_bytes()))
    reports = []
    if not only or only == "decoder":
        reports.append(fuzz_decoder(image_samples(photo), seconds, batch))
        echo(_line(reports[-1]))
    for service, descriptor in SERVICES.items():
        channel = grpc.insecure_channel(
            addresses[service], options=[("grpc.max_send_message_length", -1)]
        )
        try:
            for method in descriptor.methods:
                target = f"{service}.{method.name}"
                if only and only not in (service, target):
                    continue
                if target == "inference.ClipScore":
                    # Without weights every load fails, and a failed load is tried again on a
                    # call CLIP_RETRY_S later, which takes its time; start inside that window.
                    warm_up(addresses[service])
                report = fuzz_rpc(channel, service, method, strategies, seconds, batch)
                for dead in alive() if alive else []:
                    report.findings.append(Finding(target, "service died", dead))
                reports.append(report)
                echo(_line(report))
        finally:
            channel.close()
    return reports


def _line(report: Report) -> str:
    verdict = f"{len(report.findings)} finding(s)" if report.findings else "no findings"
    return (
        f"{report.target:<28} {report.executions:>6} runs  {report.rate:>7.1f}/s  {verdict}"
        + "".join(f"\n    {finding}" for finding in report.findings)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per target")
    parser.add_argument("--batch", type=int, default=20, help="examples per seed")
    parser.add_argument(
        "--only", default="", help="one service, SERVICE.METHOD, planted:SERVICE.METHOD, "
        "planted or decoder"
    )  # fmt: skip
    parser.add_argument("--mode", choices=("fields", "planted", "both"), default="both")
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from fuzz_planted import prepare

    photo = args.shared / "data/lfw/George_W_Bush/George_W_Bush_0001.jpg"
    with tempfile.TemporaryDirectory(prefix="facesets-fuzz-") as temporary:
        work = Path(temporary)
        processes = start_services(work, args.shared)
        try:
            planted = (
                prepare(work / "root", work / "outside", photo, processes["clustering"].address)
                if args.mode != "fields"
                else None
            )
            reports = run_all(
                {name: p.address for name, p in processes.items()},
                work / "root" / "sandbox",
                photo,
                args.seconds,
                args.batch,
                args.only,
                alive=lambda: [
                    n for n, p in processes.items() if p.process and p.process.poll() is not None
                ],
                echo=print,
                planted=planted,
                fields=args.mode != "planted",
            )
        finally:
            for process in processes.values():
                process.stop()
    runs = sum(r.executions for r in reports)
    seconds = sum(r.seconds for r in reports)
    findings = sum(len(r.findings) for r in reports)
    print(
        f"{len(reports)} targets, {runs} runs in {seconds:.0f} s "
        f"({runs / max(seconds, 1e-9):.1f}/s), {findings} finding(s)"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
