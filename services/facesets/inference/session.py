"""The one place that chooses ONNX Runtime execution providers and session options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnxruntime as ort
import structlog

from facesets.common import settings
from facesets.inference.runtime import (
    CPU,
    PROVIDER_NAMES,
    Accelerator,
    OrtInstall,
    accelerator_by_provider,
    not_in_use_problem,
    probe,
    short_names,
    unavailable_problem,
    wanted_accelerator,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ProviderChoice:
    """The providers the sessions are asked for, and what the start-up check found."""

    order: tuple[str, ...]  # short names, preference order
    chosen: tuple[str, ...]  # ONNX Runtime names, the available ones of `order`, CPU last
    wanted: Accelerator | None  # the accelerator the order asks for first
    install: OrtInstall
    problem: str = ""  # plain words and the fix; "" when the wanted accelerator is there

    def check_in_use(self, in_use: Sequence[str]) -> str:
        """The problem, if the models' sessions ended on the CPU against the order's wish
        though the start-up check passed ("" when it did not: that was reported already)."""
        if self.problem or self.wanted is None:
            return ""
        if any(accelerator_by_provider(p) for p in in_use):
            return ""
        return not_in_use_problem(self.wanted, in_use)


def resolve_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Map short names (dml, cuda, cpu) to the providers `available` holds.

    Order is preference order; CPU is always kept as the last fallback.
    """
    chosen: list[str] = []
    for short in short_names(requested):
        name = PROVIDER_NAMES[short]
        if name in available and name not in chosen:
            chosen.append(name)
        elif name not in available:
            log.info("provider unavailable", provider=name)
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def choose_providers(
    explicit: Sequence[str] | None, install: OrtInstall | None = None
) -> ProviderChoice:
    """The providers to ask for, from `--providers` (None: the default order) and the install.

    The problem is set when the order asks for an accelerator first (see wanted_accelerator)
    and no accelerator at all would be used: the sessions would quietly run on the CPU.
    """
    install = install or probe()
    order = tuple(short_names(explicit)) if explicit else settings.inference().runtime.providers
    chosen = resolve_providers(order, install.available)
    wanted = wanted_accelerator(explicit, install)
    problem = ""
    if wanted is not None and not any(accelerator_by_provider(p) for p in chosen):
        problem = unavailable_problem(wanted, install)
    elif wanted is not None and chosen[0] != wanted.provider:
        log.warning(
            "accelerator asked for first is unavailable; using the next one",
            wanted=wanted.provider,
            using=chosen[0],
        )
    return ProviderChoice(order, tuple(chosen), wanted, install, problem)


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
