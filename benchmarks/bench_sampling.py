"""Policy-sampling throughput: Hugging Face `generate` itself, `generate`'s samples replayed
without computing finished rows (engine "generate" today, `cpmi_lib.lm.fast_generate`), and the
rollout engine (engine "rows", `cpmi_lib.lm.rollouts`), on the same problems, model and machine,
at several batch sizes.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.bench_sampling``). Writes
``results/benchmarks/sampling.json`` and ``.md``.

The replay must give `generate`'s samples exactly: the share of identical solution texts is
printed for each batch size. The rollout engine draws other random numbers (a stream per problem
against a stream per batch), so its samples differ; the work is the same (problems, samples per
problem, temperature, token limit), and each engine's accuracy and mean step count are printed as
a check that they sample the same distribution. Greedy decoding has no randomness: there the
rollout engine must give `generate`'s solutions, and the share that are identical is printed
(float rounding, which batch shape moves, can flip a near-tie).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.text_format import render_prompt, split_solution
from cpmi_lib.data.world import build_world
from cpmi_lib.lm.default_lm import LMTrainConfig, ensure_default_lm
from cpmi_lib.lm.load import load_lm
from cpmi_lib.lm.rollouts import left_padded
from cpmi_lib.lm.sampling import SampleConfig, generate_batch, generate_texts, generated_lengths

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
SAMPLES, MAX_NEW_TOKENS, TEMPERATURE = 8, 160, 0.7  # Best-of-N pools' sampling at default sizes


#: The measured ways to sample: name -> (engine, replay).
WAYS = {
    "generate (Hugging Face)": ("generate", False),
    "generate (replayed)": ("generate", True),
    "rows": ("rows", None),
}


def measure(
    model, tok, problems, cfg: SampleConfig, replay: bool | None, repeats: list[float]
) -> dict:
    """One way's samples and their quality; its seconds are the median of `repeats` (the
    same call timed several times, alternating with the other ways)."""
    prompts = [render_prompt(p.question) for p in problems]
    texts, generated = generate_texts(model, tok, prompts, cfg, replay=replay)
    seconds = statistics.median(repeats)
    pairs = zip(problems, texts, strict=True)
    solutions = [(p, split_solution(x)) for p, group in pairs for x in group]
    right = sum(a is not None and answers_equivalent(p.answer, a) for p, (_, a) in solutions)
    return {
        "seconds": repeats,
        "median_seconds": seconds,
        "sequences_per_s": len(solutions) / seconds,
        "generated_tokens_per_s": generated / seconds,
        "accuracy": right / len(solutions),
        "mean_steps": sum(len(steps) for _, (steps, _) in solutions) / len(solutions),
        "texts": texts,
    }


def timed(model, tok, problems, cfg: SampleConfig, replay: bool | None) -> float:
    """Seconds of one `generate_texts` call over all the problems."""
    prompts = [render_prompt(p.question) for p in problems]
    start = time.perf_counter()
    generate_texts(model, tok, prompts, cfg, replay=replay)
    return time.perf_counter() - start


def greedy_agreement(model, tok, problems, batch_size: int) -> float:
    """Share of problems whose greedy solution is the same text under both engines."""
    prompts = [render_prompt(p.question) for p in problems]
    texts = {
        engine: generate_texts(
            model, tok, prompts, SampleConfig(1, 0.0, MAX_NEW_TOKENS, batch_size, engine=engine)
        )[0]
        for engine in ("generate", "rows")
    }
    same = sum(a == b for a, b in zip(texts["generate"], texts["rows"], strict=True))
    return same / len(prompts)


def finished_row_share(model, tok, problems, cfg: SampleConfig) -> float:
    """Share of the rows x steps `generate` computes that belong to rows already finished: each
    batch runs until its longest row ends, so a row that ended earlier is computed for nothing."""
    prompts = [render_prompt(p.question) for p in problems]
    per_batch = cfg.batch_size // cfg.n
    computed = useful = 0
    for b, start in enumerate(range(0, len(prompts), per_batch)):
        encoded = [tok(p).input_ids for p in prompts[start : start + per_batch]]
        ids, mask = left_padded(encoded, tok.pad_token_id)
        torch.manual_seed(cfg.seed + b)  # as `generate_texts` seeds batch b
        new = generate_batch(model, ids, mask, cfg, tok.pad_token_id, tok.eos_token_id)
        computed += new.numel()
        useful += int(generated_lengths(new, tok.eos_token_id).sum())
    return 1 - useful / computed


def same_share(a: list[list[str]], b: list[list[str]]) -> float:
    """Share of samples (prompt, row) whose texts are equal in `a` and `b`."""
    pairs = [(x, y) for ga, gb in zip(a, b, strict=True) for x, y in zip(ga, gb, strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


def markdown(result: dict) -> str:
    base = next(iter(result["runs"].values()))["sequences_per_s"]
    lines = [
        f"Machine: {result['machine']}; model: default LM; {result['problems']} training problems, "
        f"{SAMPLES} solutions each of up to {MAX_NEW_TOKENS} tokens at temperature "
        f"{TEMPERATURE}; sequences/s from the median of {result['repeats']} alternating "
        "timings.",
        "",
        "| engine | batch (sequences) | sequences/s | generated tokens/s | speed-up | accuracy "
        "| mean steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["runs"].values():
        lines.append(
            f"| {r['engine']} | {r['batch_size']} | {r['sequences_per_s']:.1f} | "
            f"{r['generated_tokens_per_s']:.0f} | {r['sequences_per_s'] / base:.2f}x | "
            f"{r['accuracy']:.3f} | {r['mean_steps']:.2f} |"
        )
    lines += [""] + [
        f"Batch {b}: the replay's solution texts equal `generate`'s for {share:.1%} of the "
        f"{result['problems'] * SAMPLES} samples."
        for b, share in result["replay_identical"].items()
    ]
    lines += [""] + [
        f"Batch {b}: {share:.1%} of the rows x decode steps `generate` computes belong to rows "
        "that had already finished."
        for b, share in result["finished_row_share"].items()
    ]
    lines += [
        "",
        f"Greedy decoding, same solution text under both engines: "
        f"{result['greedy_identical']:.1%} of {result['problems']} problems.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5, help="timings per way (median)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_lm(ensure_default_lm(LMTrainConfig()))
    problems = build_world(LMTrainConfig().world, {"train": args.problems}, seed=2)["train"]
    for engine in ("generate", "rows"):  # warm-up: the first calls pay for allocation
        generate_texts(model, tok, [render_prompt(problems[0].question)],
                       SampleConfig(2, TEMPERATURE, 16, engine=engine))  # fmt: skip
    configs = {
        (name, batch): (
            SampleConfig(SAMPLES, TEMPERATURE, MAX_NEW_TOKENS, batch, seed=0, engine=engine),
            replay,
        )
        for name, (engine, replay) in WAYS.items()
        for batch in args.batch_sizes
    }
    seconds: dict[tuple[str, int], list[float]] = {key: [] for key in configs}
    for _ in range(args.repeats):  # alternating, so a slow spell of the machine hits all alike
        for key, (cfg, replay) in configs.items():
            seconds[key].append(timed(model, tok, problems, cfg, replay))
    runs = {
        f"{name}, {batch}": {
            "engine": name,
            "batch_size": batch,
            **measure(model, tok, problems, cfg, replay, seconds[(name, batch)]),
        }
        for (name, batch), (cfg, replay) in configs.items()
    }
    replay_identical = {
        batch: same_share(
            runs[f"generate (Hugging Face), {batch}"]["texts"],
            runs[f"generate (replayed), {batch}"]["texts"],
        )
        for batch in args.batch_sizes
    }
    for r in runs.values():
        del r["texts"]
    result = {
        "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "problems": len(problems),
        "repeats": args.repeats,
        "runs": runs,
        "replay_identical": replay_identical,
        "finished_row_share": {
            batch: finished_row_share(
                model,
                tok,
                problems,
                SampleConfig(SAMPLES, TEMPERATURE, MAX_NEW_TOKENS, batch, seed=0),
            )
            for batch in args.batch_sizes
        },
        "greedy_identical": greedy_agreement(model, tok, problems, max(args.batch_sizes) // 8),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sampling.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "sampling.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
