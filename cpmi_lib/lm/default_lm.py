"""The embedded track's default LM: a small Llama trained from scratch on the arithmetic world.

It must be good enough that its probabilities carry signal and imperfect enough that it makes
natural mistakes, and it must train on 2 CPU cores in minutes. What gets there: a word-level
tokenizer with one token per digit, loss on the solution tokens only, a small model trained for
many steps. The trained model is saved with `save_pretrained` to a cache directory keyed by its
configuration and reused when present.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, get_linear_schedule_with_warmup

from cpmi_lib.core.paths import cache_root
from cpmi_lib.core.text_format import PROMPT_TEMPLATES, render_prompt, render_solution
from cpmi_lib.data.world import Problem, WorldConfig, build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.lm.shipped import install_shipped

#: Bump when the world generator, tokenizer or training loop change what a config produces.
RECIPE_VERSION = 1
#: The cache root when this module was imported (`cpmi_lib.core.paths.cache_root`).
DEFAULT_CACHE = cache_root()


@dataclass(frozen=True)
class LMTrainConfig:
    """Everything that determines the trained default LM (and so its cache key)."""

    world: WorldConfig = field(default_factory=WorldConfig)
    n_train_problems: int = 40_000
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4
    train_steps: int = 1750
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    templates: tuple[str, ...] = PROMPT_TEMPLATES  # problem i is shown with template i mod K

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        blob = json.dumps({"recipe": RECIPE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def training_text_ids(
    tokenizer: Any, problem: Problem, template: str, cut: int | None = None
) -> tuple[list[int], int]:
    """Token ids of prompt + gold solution + EOS, and how many of them are the prompt.

    With `cut` = k (0 ≤ k < S), an *anticipation* example: the first k gold steps, then directly
    the answer line with the final gold answer, as if the remaining steps had been done in one's
    head."""
    steps = problem.gold_steps
    if cut is not None:
        if not 0 <= cut < len(steps):
            raise ValueError(f"cut must be in [0, {len(steps)}) for {problem.id!r}, got {cut}")
        steps = steps[:cut]
    prompt = tokenizer(render_prompt(problem.question, template)).input_ids
    solution = tokenizer(render_solution(steps, problem.answer), add_special_tokens=False)
    return prompt + solution.input_ids + [tokenizer.eos_token_id], len(prompt)


def _batch(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with the loss masked to the solution tokens."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _length_bucketed_batches(
    data: list[tuple[list[int], int]], batch_size: int, rng: random.Random, pool: int = 32
) -> list[list[int]]:
    """One epoch of batches in random order, each drawn from similar lengths to waste less padding.

    The epoch is shuffled, cut into pools of `pool` batches, and each pool is sorted by length
    before it is cut into batches; then the batches are shuffled.
    """
    order = list(range(len(data)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = sorted(order[start : start + step], key=lambda i: len(data[i][0]))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    batches = [b for b in batches if len(b) == batch_size]
    rng.shuffle(batches)
    return batches


def train_lm(cfg: LMTrainConfig, out_dir: str | os.PathLike[str], progress: bool = True) -> Path:
    """Train the default LM from scratch and `save_pretrained` it (model + tokenizer) to `out_dir`.

    Deterministic for a seed on the same machine (fixed thread count, seeded init and data order).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, Path(out_dir), progress)
    finally:
        torch.set_num_threads(threads)  # the thread count is process-wide: give it back


def _train(cfg: LMTrainConfig, out: Path, progress: bool) -> Path:
    torch.manual_seed(cfg.seed)
    tokenizer = build_world_tokenizer()
    data = _training_data(tokenizer, cfg, cfg.n_train_problems, cfg.seed)
    model_cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(model_cfg)
    schedule = _Schedule(cfg.train_steps, cfg.lr, cfg.warmup_steps, cfg.weight_decay, cfg.seed)
    return _fit(
        model, tokenizer, data, cfg.batch_size, schedule, out, cfg.to_dict(), cfg.key(), progress
    )


def _training_data(
    tokenizer: Any, cfg: LMTrainConfig, n: int, seed: int, anticipation: float = 0.0
) -> list[tuple[list[int], int]]:
    """`n` fresh problems of `cfg`'s world as training examples; a fraction `anticipation` of
    them (drawn by a seeded coin, so no draw at all when 0) cut after a uniform k < S steps and
    answered at once (`training_text_ids`)."""
    problems = build_world(cfg.world, {"lm": n}, seed=seed)["lm"]
    k = len(cfg.templates)
    coin = random.Random(f"anticipation:{seed}")
    data = []
    for i, p in enumerate(problems):
        cut = None
        if anticipation > 0 and coin.random() < anticipation:
            cut = coin.randrange(p.n_steps)
        data.append(training_text_ids(tokenizer, p, cfg.templates[i % k], cut))
    return data


@dataclass(frozen=True)
class _Schedule:
    steps: int
    lr: float
    warmup_steps: int
    weight_decay: float
    seed: int


def _fit(
    model: LlamaForCausalLM,
    tokenizer: Any,
    data: list[tuple[list[int], int]],
    batch_size: int,
    sched: _Schedule,
    out: Path,
    config: dict[str, Any],
    key: str,
    progress: bool,
) -> Path:
    """AdamW with linear warm-up and decay over length-bucketed batches; saves atomically."""
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=sched.lr, weight_decay=sched.weight_decay, betas=(0.9, 0.98)
    )
    schedule = get_linear_schedule_with_warmup(optimizer, sched.warmup_steps, sched.steps)
    order_rng = random.Random(sched.seed)
    batches: list[list[int]] = []
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(sched.steps), desc=f"training LM {key}", disable=not progress)
    for step in bar:
        if not batches:
            batches = _length_bucketed_batches(data, batch_size, order_rng)
        idx = batches.pop()
        batch = _batch([data[i] for i in idx], tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    record = {
        "config": config,
        "key": key,
        "train_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss_curve": losses[:: max(1, len(losses) // 200)],
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
    }
    (tmp / "training.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a directory with training.json is complete: an interrupted run leaves none
    return out


@dataclass(frozen=True)
class ContinuedLMConfig:
    """An LM that starts from a trained LM (a default LM or another continued one) and trains on
    fresh gold solutions.

    The embedded track's PRM backbone: the paper trains its PRM from a strong math model, and a
    PRM can only judge arithmetic as well as its backbone knows it. Starting from the policy LM's
    weights (as the paper's PRM starts from the policy model) and training it further on problems
    the policy never saw gives a backbone that knows more arithmetic than the policy at a fraction
    of the cost of a second LM. Every label source's PRM uses the same backbone.

    With `anticipation` = p > 0, a labeling LM (`cpmi_lib.studies.labeler_skill`): a fraction p of
    its
    examples stop after k < S gold steps and state the final answer at once, so its belief in the
    answer can follow a partial solution, as CPMI assumes of its labeler.
    """

    parent: LMTrainConfig | ContinuedLMConfig = field(default_factory=LMTrainConfig)
    n_train_problems: int = 40_000
    train_steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 50
    seed: int = 1  # problems and batch order: not an ancestor's, so the data are new
    anticipation: float = 0.0

    def __post_init__(self) -> None:
        ancestors = self.lineage()[1:]
        if self.seed in {a.seed for a in ancestors}:
            raise ValueError(
                f"ContinuedLMConfig.seed must differ from the parent's ({self.parent.seed}) and "
                f"every earlier ancestor's ({[a.seed for a in ancestors]}): the same seed would "
                "replay their own training problems"
            )
        if self.train_steps < 1 or self.lr <= 0 or self.n_train_problems < 1:
            raise ValueError(f"ContinuedLMConfig: steps, lr and problems must be positive: {self}")
        if not 0.0 <= self.anticipation <= 1.0:
            raise ValueError(
                f"ContinuedLMConfig.anticipation must be in [0, 1]: {self.anticipation}"
            )

    def lineage(self) -> list[LMTrainConfig | ContinuedLMConfig]:
        """This config, its parent, …, down to the LM trained from scratch."""
        chain: list[LMTrainConfig | ContinuedLMConfig] = [self]
        while isinstance(chain[-1], ContinuedLMConfig):
            chain.append(chain[-1].parent)
        return chain

    @property
    def root(self) -> LMTrainConfig:
        """The LM trained from scratch at the start of the lineage: its world, tokenizer and
        batch settings are every descendant's."""
        root = self.lineage()[-1]
        assert isinstance(root, LMTrainConfig)
        return root

    def to_dict(self) -> dict[str, Any]:
        """As `asdict`, but a field added after a model was cached is left out at its neutral
        default, so cached models keep their keys (`anticipation` = 0: the recipe before it)."""
        d = asdict(self)
        d["parent"] = self.parent.to_dict()
        if self.anticipation == 0.0:
            del d["anticipation"]
        return d

    def key(self) -> str:
        blob = json.dumps({"recipe": RECIPE_VERSION, **self.to_dict()}, sort_keys=True)
        return "c" + hashlib.sha256(blob.encode()).hexdigest()[:11]


def continued_lm_dir(cfg: ContinuedLMConfig, cache: str | os.PathLike[str] = DEFAULT_CACHE) -> Path:
    return Path(cache) / "models" / f"continued-lm-{cfg.key()}"


def ensure_continued_lm(
    cfg: ContinuedLMConfig,
    cache: str | os.PathLike[str] = DEFAULT_CACHE,
    progress: bool = True,
) -> Path:
    """The continued LM's directory: the cache's, else the checkpoint shipped for `cfg`
    (verified), else trained now (after its parent, if needed)."""
    path = continued_lm_dir(cfg, cache)
    if (path / "training.json").exists():
        return path
    with _one_builder(path):
        if (path / "training.json").exists() or install_shipped(path):
            return path
        return _train_continued(cfg, path, cache, progress)


def _train_continued(
    cfg: ContinuedLMConfig, path: Path, cache: str | os.PathLike[str], progress: bool
) -> Path:
    parent = ensure_lm(cfg.parent, cache, progress)
    root = cfg.root
    threads = torch.get_num_threads()
    torch.set_num_threads(root.threads)
    try:
        torch.manual_seed(cfg.seed)
        tokenizer = build_world_tokenizer()
        model = LlamaForCausalLM.from_pretrained(parent, dtype=torch.float32)
        data = _training_data(tokenizer, root, cfg.n_train_problems, cfg.seed, cfg.anticipation)
        schedule = _Schedule(cfg.train_steps, cfg.lr, cfg.warmup_steps, root.weight_decay, cfg.seed)
        record = {**cfg.to_dict(), "parent_dir": parent.name}
        return _fit(
            model,
            tokenizer,
            data,
            root.batch_size,
            schedule,
            path,
            record,
            cfg.key(),
            progress,
        )
    finally:
        torch.set_num_threads(threads)


def default_lm_dir(cfg: LMTrainConfig, cache: str | os.PathLike[str] = DEFAULT_CACHE) -> Path:
    return Path(cache) / "models" / f"default-lm-{cfg.key()}"


def ensure_default_lm(
    cfg: LMTrainConfig | None = None,
    cache: str | os.PathLike[str] = DEFAULT_CACHE,
    progress: bool = True,
) -> Path:
    """The directory of the default LM for `cfg`: the cache's, else the checkpoint shipped for
    `cfg` (verified, `cpmi_lib.lm.shipped`), else trained now."""
    cfg = cfg or LMTrainConfig()
    path = default_lm_dir(cfg, cache)
    if (path / "training.json").exists():
        return path
    with _one_builder(path):
        if (path / "training.json").exists() or install_shipped(path):
            return path
        return train_lm(cfg, path, progress=progress)


@contextmanager
def _one_builder(path: Path) -> Iterator[None]:
    """Hold the build lock of an LM directory (``.<name>.lock`` beside it): concurrent callers
    (the ranks of a launched job asking for ``--model default``) wait, then find it built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def ensure_lm(
    cfg: LMTrainConfig | ContinuedLMConfig,
    cache: str | os.PathLike[str] = DEFAULT_CACHE,
    progress: bool = True,
) -> Path:
    """The directory of a default or continued LM, trained now (with its ancestors) if needed."""
    if isinstance(cfg, ContinuedLMConfig):
        return ensure_continued_lm(cfg, cache, progress)
    return ensure_default_lm(cfg, cache, progress)


def training_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What `train_lm` recorded next to the model: config, seconds, parameters, loss curve."""
    return json.loads((Path(path) / "training.json").read_text())
