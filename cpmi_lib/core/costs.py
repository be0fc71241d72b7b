"""One cost meter for every labeler, trainer and evaluator, so their costs compare side by side.

It counts what each method really spends: wall seconds, tokens run through forward passes
(teacher-forced or prompt tokens, padding excluded), tokens generated, forward and generate calls,
peak memory (process RSS, and CUDA peak on a GPU) and estimated FLOPs (2 × parameters × tokens).
Costs serialize to JSON and add up across runs and shards.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import psutil
import torch


@dataclass
class Costs:
    """What a piece of work cost. `+` adds counts and seconds and takes the larger peaks."""

    wall_seconds: float = 0.0
    forward_tokens: int = 0
    generated_tokens: int = 0
    forward_calls: int = 0
    generate_calls: int = 0
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int = 0
    flops: float = 0.0
    items: int = 0  # trajectories (or other units) the work covered
    steps: int = 0  # steps labeled

    _PEAKS = ("peak_rss_bytes", "peak_cuda_bytes")

    def __add__(self, other: Costs) -> Costs:
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = max(a, b) if f.name in self._PEAKS else a + b
        return Costs(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Costs:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def per_step(self) -> dict[str, float]:
        """Every additive cost divided by the number of labeled steps."""
        if not self.steps:
            raise ValueError("no labeled steps recorded: per-step costs are undefined")
        skip = {"steps", "items", *self._PEAKS}
        return {
            f.name: getattr(self, f.name) / self.steps for f in fields(self) if f.name not in skip
        }


class CostMeter:
    """Records costs while work runs; use as a context manager to time it.

    >>> meter = CostMeter(n_parameters=1000)
    >>> with meter:
    ...     meter.add_forward(tokens=12)
    >>> meter.costs.forward_tokens, meter.costs.flops
    (12, 24000.0)
    """

    def __init__(self, n_parameters: int = 0, device: torch.device | str | None = None):
        self.n_parameters = n_parameters
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.costs = Costs()
        self._process = psutil.Process()
        self._started: float | None = None

    def __enter__(self) -> CostMeter:
        self._started = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._sample_memory()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._started is not None
        self.costs.wall_seconds += time.perf_counter() - self._started
        self._started = None
        self._sample_memory()

    def _sample_memory(self) -> None:
        rss = self._process.memory_info().rss
        self.costs.peak_rss_bytes = max(self.costs.peak_rss_bytes, rss)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            self.costs.peak_cuda_bytes = max(self.costs.peak_cuda_bytes, peak)

    def add_forward(self, tokens: int, calls: int = 1) -> None:
        """A teacher-forced forward pass over `tokens` real (non-padding) tokens."""
        self.costs.forward_tokens += tokens
        self.costs.forward_calls += calls
        self.costs.flops += 2.0 * self.n_parameters * tokens
        self._sample_memory()

    def add_generate(self, prompt_tokens: int, new_tokens: int, calls: int = 1) -> None:
        """A generate call: its prompts are forward tokens, its outputs generated tokens."""
        self.costs.forward_tokens += prompt_tokens
        self.costs.generated_tokens += new_tokens
        self.costs.generate_calls += calls
        self.costs.flops += 2.0 * self.n_parameters * (prompt_tokens + new_tokens)
        self._sample_memory()

    def add_items(self, items: int = 1, steps: int = 0) -> None:
        self.costs.items += items
        self.costs.steps += steps
