"""The one place that chooses ONNX Runtime execution providers and session options."""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort
import structlog

log = structlog.get_logger(__name__)

PROVIDER_NAMES = {
    "dml": "DmlExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Map short names (dml, cuda, cpu) to the providers this build of ONNX Runtime has.

    Order is preference order; CPU is always kept as the last fallback.
    """
    available = set(ort.get_available_providers())
    chosen: list[str] = []
    for short in requested:
        name = PROVIDER_NAMES.get(short.strip().lower())
        if name is None:
            raise ValueError(f"unknown provider '{short}': choose from {', '.join(PROVIDER_NAMES)}")
        if name in available and name not in chosen:
            chosen.append(name)
        elif name not in available:
            log.info("provider unavailable", provider=name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def session_options(providers: Sequence[str], intra_op_threads: int = 0) -> ort.SessionOptions:
    """intra_op_threads 0 lets ONNX Runtime use every core for each call."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = intra_op_threads
    if "DmlExecutionProvider" in providers:
        # DirectML does not support memory patterns or parallel execution.
        options.enable_mem_pattern = False
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def providers_in_use(session: ort.InferenceSession) -> list[str]:
    return list(session.get_providers())
