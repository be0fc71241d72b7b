"""How good a policy LM is on world problems: greedy accuracy and how often samples disagree.

The embedded track needs an LM whose probabilities carry signal (greedy accuracy well above zero)
and that still makes natural mistakes (accuracy below 90%, and sampled solutions to the same
problem that are sometimes right and sometimes wrong), so both are measured and recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy.stats import binomtest
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.data.world import Problem
from cpmi_lib.lm.sampling import SampleConfig, sample_solutions


@dataclass(frozen=True)
class LMQuality:
    n_problems: int
    greedy_accuracy: float
    greedy_accuracy_ci95: tuple[float, float]
    greedy_mean_steps: float
    greedy_exact_steps_rate: float  # solutions whose every step is right (first_error == -1)
    n_sampled_problems: int
    samples_per_problem: int
    temperature: float
    sampled_accuracy: float
    mixed_rate: float  # problems with at least one right and one wrong sample

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def measure_lm_quality(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    n_sampled_problems: int = 100,
    samples_per_problem: int = 8,
    temperature: float = 0.7,
    seed: int = 0,
    progress: bool = True,
) -> LMQuality:
    """Greedy accuracy (with a Clopper-Pearson 95% CI) and the sampled mixed-outcome rate."""
    greedy = sample_solutions(
        model, tokenizer, problems, SampleConfig(n=1, temperature=0.0), progress
    )
    n_right = sum(bool(t.metadata["final_correct"]) for t in greedy)
    ci = binomtest(n_right, len(problems)).proportion_ci(0.95, method="exact")
    sub = list(problems[:n_sampled_problems])
    cfg = SampleConfig(n=samples_per_problem, temperature=temperature, seed=seed)
    sampled = sample_solutions(model, tokenizer, sub, cfg, progress)
    outcomes: dict[str, list[bool]] = defaultdict(list)
    for t in sampled:
        outcomes[t.metadata["problem_id"]].append(bool(t.metadata["final_correct"]))
    # A sample with no step at all is not a trajectory: count it as wrong.
    for p in sub:
        outcomes[p.id] += [False] * (samples_per_problem - len(outcomes[p.id]))
    mixed = sum(any(o) and not all(o) for o in outcomes.values())
    return LMQuality(
        n_problems=len(problems),
        greedy_accuracy=n_right / len(problems),
        greedy_accuracy_ci95=(float(ci.low), float(ci.high)),
        greedy_mean_steps=sum(t.n_steps for t in greedy) / max(1, len(greedy)),
        greedy_exact_steps_rate=sum(t.first_error == -1 for t in greedy) / len(problems),
        n_sampled_problems=len(sub),
        samples_per_problem=samples_per_problem,
        temperature=temperature,
        sampled_accuracy=sum(sum(o) for o in outcomes.values()) / (len(sub) * samples_per_problem),
        mixed_rate=mixed / len(sub),
    )
