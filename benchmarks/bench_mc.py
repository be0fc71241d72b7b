"""MC rollout throughput: the `generate` loop MC used before (issue #23) against the rollout
engine (`cpmi_lib.lm.rollouts`) alone and in blocks of trajectories, on the same trajectories,
model and machine.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.bench_mc``). Writes
``results/benchmarks/mc.json`` and ``.md``.

The trajectories are the policy's own samples, as in the grid. *Before* is MC as it was: one
trajectory at a time, its S·N rollout rows through Hugging Face `generate` in calls of up to 64
sequences, every row re-encoding its prompt and running until the longest row of its call ends,
one random stream per call. *After* is `mc_block`: each prefix encoded once, finished rows
dropped, a random stream per row, `batch_trajectories` trajectories per call. The two draw
different random numbers, so their rollouts differ; the work (prefixes, N, temperature, token
limit) is the same, and the mean MC value of both is printed as a check that they estimate the
same thing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.text_format import split_solution
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.world import build_world
from cpmi_lib.labeling.mc import MCConfig, MCTask, mc_block, prefix_prompts
from cpmi_lib.lm.default_lm import LMTrainConfig, ensure_default_lm
from cpmi_lib.lm.load import load_lm
from cpmi_lib.lm.sampling import SampleConfig, generate_texts, sample_solutions

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
N_ROLLOUTS, MAX_NEW_TOKENS, TEMPERATURE = 8, 160, 0.7  # the default preset's MC


def policy_trajectories(model, tok, n: int) -> list[Trajectory]:
    """The policy's own solutions of `n` training problems of the default world (MC's workload
    in the grid), sampled as the experiments sample them (seeded)."""
    problems = build_world(LMTrainConfig().world, {"train": n}, seed=1)["train"]
    cfg = SampleConfig(1, TEMPERATURE, MAX_NEW_TOKENS, batch_size=32, seed=0)
    return sample_solutions(model, tok, problems, cfg, progress=False)


def before(model, tok, trajs: list[Trajectory]) -> tuple[int, list[float]]:
    """MC's old loop: generated tokens and step values."""
    generated, values = 0, []
    for t in trajs:
        rows = [
            p
            for p in prefix_prompts(t.question, t.steps, MCConfig().template)
            for _ in range(N_ROLLOUTS)
        ]
        cfg = SampleConfig(1, TEMPERATURE, MAX_NEW_TOKENS, batch_size=64, seed=0)
        texts, n_new = generate_texts(model, tok, rows, cfg)
        generated += n_new
        for i in range(t.n_steps):
            group = [x[0] for x in texts[i * N_ROLLOUTS : (i + 1) * N_ROLLOUTS]]
            answers = [split_solution(x)[1] for x in group]
            ok = sum(a is not None and answers_equivalent(t.gold_answer, a) for a in answers)
            values.append(ok / N_ROLLOUTS)
    return generated, values


def after(model, tok, trajs: list[Trajectory], block: int) -> tuple[int, list[float]]:
    cfg = MCConfig(N_ROLLOUTS, TEMPERATURE, MAX_NEW_TOKENS, batch_trajectories=block)
    tasks = [MCTask(t.question, t.steps, t.gold_answer, seed=k) for k, t in enumerate(trajs)]
    generated, values = 0, []
    for start in range(0, len(tasks), block):
        for r in mc_block(model, tok, tasks[start : start + block], cfg):
            generated += r.generated_tokens
            values += [v.value for v in r.values]
    return generated, values


def measure(fn, *args) -> dict:
    start = time.perf_counter()
    generated, values = fn(*args)
    seconds = time.perf_counter() - start
    rollouts = len(values) * N_ROLLOUTS
    return {
        "seconds": seconds,
        "rollouts_per_s": rollouts / seconds,
        "generated_tokens_per_s": generated / seconds,
        "mean_value": sum(values) / len(values),
        "rollouts": rollouts,
    }


def markdown(result: dict) -> str:
    base = next(iter(result["runs"].values()))["rollouts_per_s"]
    lines = [
        f"Machine: {result['machine']}; model: default LM; the policy's own solutions of "
        f"{result['trajectories']} training problems ({result['steps']} steps), N = {N_ROLLOUTS} "
        f"rollouts of up to {MAX_NEW_TOKENS} tokens at temperature {TEMPERATURE}.",
        "",
        "| MC engine | rollouts/s | generated tokens/s | speed-up | mean MC value |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in result["runs"].items():
        lines.append(
            f"| {name} | {r['rollouts_per_s']:.1f} | {r['generated_tokens_per_s']:.0f} | "
            f"{r['rollouts_per_s'] / base:.2f}x | {r['mean_value']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_lm(ensure_default_lm(LMTrainConfig()))
    trajs = policy_trajectories(model, tok, args.trajectories)
    runs = {"before (generate, one trajectory a call)": measure(before, model, tok, trajs)}
    for block in args.blocks:
        runs[f"after, blocks of {block}"] = measure(after, model, tok, trajs, block)
    result = {
        "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "trajectories": len(trajs),
        "steps": sum(t.n_steps for t in trajs),
        "runs": runs,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mc.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "mc.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
