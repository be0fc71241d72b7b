"""The arithmetic world: generated multi-step word problems whose step truth is known exactly.

Each problem is a short story about a person and a pile of objects, changed by a chain of
operations (+ − × ÷ with integer intermediate results) and padded with distractor sentences.
Its gold solution has one computation per step (``Ava has 12 + 7 = 19 apples.``). Corrupted
solutions carry one error of a known kind at a known step; every later step continues consistently
from the wrong value, as a real solver would, so `first_error` and `step_labels` are exact. The
same parser grades any solution (for example one sampled from an LM) step by step.

Everything is deterministic by seed, and the splits are disjoint by construction: a problem's
split is decided by a fixed hash of its question text, whatever sizes or seed are asked for. The
"lm" split trains the policy LM; "train", "dev" and "test" serve the labelers and PRMs, so the
policy has never seen the problems it is asked to solve.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cpmi_lib.core.trajectory import Trajectory, labels_from_first_error

Op = Literal["+", "-", "*", "/"]
ErrorKind = Literal["slip", "operand", "operation", "skip"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("slip", "operand", "operation", "skip")
#: Share of the problem space that belongs to each split (by hash of the question text).
SPLIT_FRACTIONS: dict[str, float] = {"lm": 0.7, "train": 0.1, "dev": 0.1, "test": 0.1}
SPLITS = tuple(SPLIT_FRACTIONS)

NAMES: dict[str, str] = {
    "Ava": "She",
    "Ben": "He",
    "Cara": "She",
    "Dan": "He",
    "Emma": "She",
    "Finn": "He",
    "Grace": "She",
    "Hugo": "He",
    "Ivy": "She",
    "Jack": "He",
    "Lena": "She",
    "Max": "He",
    "Mia": "She",
    "Noah": "He",
    "Olivia": "She",
    "Omar": "He",
    "Rosa": "She",
    "Sam": "He",
    "Tara": "She",
    "Leo": "He",
}
OBJECTS = (
    "apples",
    "pens",
    "marbles",
    "stickers",
    "cookies",
    "books",
    "coins",
    "shells",
    "cards",
    "stamps",
    "beads",
    "buttons",
    "candies",
    "rocks",
    "toys",
)
CONTAINERS = ("bags", "boxes", "jars", "packs", "baskets")

# Story sentences for each operation; {b} is the operand the solver must copy into the step.
OP_SENTENCES: dict[Op, tuple[str, ...]] = {
    "+": (
        "{P} buys {b} more {obj}.",
        "{P} finds {b} more {obj}.",
        "{O} gives {N} {b} {obj}.",
    ),
    "-": (
        "{P} gives {b} {obj} to {O}.",
        "{P} loses {b} {obj}.",
        "{P} sells {b} {obj}.",
    ),
    "*": (
        "Then the number of {obj} {N} has becomes {b} times as large.",
        "{P} ends up with {b} times as many {obj} as before.",
    ),
    "/": (
        "{P} splits the {obj} into {b} equal groups and keeps one group.",
        "{P} shares the {obj} equally among {b} friends including {N} and keeps one share.",
    ),
}
START_SENTENCES = ("{N} has {v} {obj}.", "{N} starts with {v} {obj}.")
PRODUCT_START = "{N} buys {n} {box} with {k} {obj} each."
DISTRACTORS = (
    "{O} has {d} {obj2}.",
    "{O} buys {d} {obj2}.",
    "There are {d} {obj2} on the table.",
)
QUESTIONS = (
    "How many {obj} does {N} have now?",
    "How many {obj} does {N} have at the end?",
)
STEP = "{N} has {a} {op} {b} = {c} {obj}."
STEP_RE = re.compile(
    r"^(?P<name>[A-Z][a-z]+) has (?P<a>-?\d+) (?P<op>[-+*/]) (?P<b>-?\d+) = (?P<c>-?\d+) "
    r"(?P<obj>[a-z]+)\.$"
)


@dataclass(frozen=True)
class WorldConfig:
    """Difficulty of the world. The defaults are the embedded track's default difficulty."""

    min_steps: int = 3
    max_steps: int = 6
    start_range: tuple[int, int] = (10, 99)
    add_range: tuple[int, int] = (2, 99)
    mul_range: tuple[int, int] = (2, 9)
    div_range: tuple[int, int] = (2, 9)
    max_value: int = 999
    distractors: tuple[int, int] = (0, 2)
    product_start_prob: float = 0.25
    ops: tuple[Op, ...] = ("+", "-", "*", "/")

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}"
            )
        unknown = set(self.ops) - set(OP_SENTENCES)
        if unknown or not self.ops:
            raise ValueError(f"ops must be a non-empty subset of + - * /, got {self.ops}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Computation:
    """One step of a solution: a op b = c."""

    a: int
    op: Op
    b: int
    c: int

    def render(self, name: str, obj: str) -> str:
        return STEP.format(N=name, a=self.a, op=self.op, b=self.b, c=self.c, obj=obj)


@dataclass(frozen=True)
class Problem:
    """A generated word problem with its gold chain of computations."""

    id: str
    question: str
    name: str
    obj: str
    computations: tuple[Computation, ...]
    story_numbers: tuple[int, ...]  # every number in the story, in order (for operand errors)
    split: str = "train"
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def answer(self) -> str:
        return str(self.computations[-1].c)

    @property
    def n_steps(self) -> int:
        return len(self.computations)

    @property
    def gold_steps(self) -> list[str]:
        return [c.render(self.name, self.obj) for c in self.computations]

    def gold_trajectory(self) -> Trajectory:
        n = self.n_steps
        return Trajectory(
            id=f"{self.id}-gold",
            question=self.question,
            steps=self.gold_steps,
            gold_answer=self.answer,
            final_answer=self.answer,
            step_labels=[True] * n,
            first_error=-1,
            source="arithmetic-world",
            metadata={"problem_id": self.id, "split": self.split, "n_steps": n, "kind": "gold"},
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["computations"] = [asdict(c) for c in self.computations]
        d["answer"] = self.answer
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        comps = tuple(Computation(x["a"], x["op"], x["b"], x["c"]) for x in d["computations"])
        return cls(
            id=d["id"],
            question=d["question"],
            name=d["name"],
            obj=d["obj"],
            computations=comps,
            story_numbers=tuple(d["story_numbers"]),
            split=d.get("split", "train"),
            config=d.get("config", {}),
        )


def apply(op: str, a: int, b: int) -> int | None:
    """a op b when it is a positive integer, else None (the world never leaves the integers)."""
    if op == "+":
        c = a + b
    elif op == "-":
        c = a - b
    elif op == "*":
        c = a * b
    elif op == "/":
        if b == 0 or a % b:
            return None
        c = a // b
    else:
        raise ValueError(f"unknown operation {op!r}")
    return c if c > 0 else None


def _pick_op(rng: random.Random, cfg: WorldConfig, v: int) -> tuple[Op, int] | None:
    """An operation and operand that keep the value a positive integer within range."""
    choices: list[tuple[Op, int]] = []
    for op in cfg.ops:
        if op == "+":
            b = rng.randint(*cfg.add_range)
            if v + b <= cfg.max_value:
                choices.append((op, b))
        elif op == "-":
            if v > cfg.add_range[0]:
                b = rng.randint(cfg.add_range[0], min(cfg.add_range[1], v - 1))
                choices.append((op, b))
        elif op == "*":
            b = rng.randint(*cfg.mul_range)
            if v * b <= cfg.max_value:
                choices.append((op, b))
        elif op == "/":
            divisors = [
                b for b in range(cfg.div_range[0], cfg.div_range[1] + 1) if v % b == 0 and v > b
            ]
            if divisors:
                choices.append((op, rng.choice(divisors)))
    return rng.choice(choices) if choices else None


def generate_problem(rng: random.Random, cfg: WorldConfig, pid: str = "") -> Problem:
    """One problem drawn from `rng`; retries internally until the chain has the drawn length."""
    while True:
        n_steps = rng.randint(cfg.min_steps, cfg.max_steps)
        name = rng.choice(sorted(NAMES))
        pronoun = NAMES[name]
        others = [n for n in sorted(NAMES) if n != name]
        obj = rng.choice(OBJECTS)
        sentences: list[str] = []
        numbers: list[int] = []
        comps: list[Computation] = []
        if n_steps >= 2 and rng.random() < cfg.product_start_prob:
            n, k = rng.randint(*cfg.mul_range), rng.randint(2, 12)
            sentences.append(
                PRODUCT_START.format(N=name, n=n, box=rng.choice(CONTAINERS), k=k, obj=obj)
            )
            numbers += [n, k]
            comps.append(Computation(n, "*", k, n * k))
            v = n * k
        else:
            v = rng.randint(*cfg.start_range)
            sentences.append(rng.choice(START_SENTENCES).format(N=name, v=v, obj=obj))
            numbers.append(v)
        while len(comps) < n_steps:
            pick = _pick_op(rng, cfg, v)
            if pick is None:
                break
            op, b = pick
            c = apply(op, v, b)
            assert c is not None
            template = rng.choice(OP_SENTENCES[op])
            sentences.append(template.format(P=pronoun, N=name, O=rng.choice(others), b=b, obj=obj))
            numbers.append(b)
            comps.append(Computation(v, op, b, c))
            v = c
        if len(comps) != n_steps:
            continue
        for _ in range(rng.randint(*cfg.distractors)):
            d = rng.randint(*cfg.add_range)
            obj2 = rng.choice([o for o in OBJECTS if o != obj])
            where = rng.randint(1, len(sentences))
            sentences.insert(
                where, rng.choice(DISTRACTORS).format(O=rng.choice(others), d=d, obj2=obj2)
            )
            numbers.insert(where, d)
        sentences.append(rng.choice(QUESTIONS).format(N=name, obj=obj))
        return Problem(
            id=pid,
            question=" ".join(sentences),
            name=name,
            obj=obj,
            computations=tuple(comps),
            story_numbers=tuple(numbers),
            config=cfg.to_dict(),
        )


def stable_fraction(text: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by `text` (SHA-256): splits that never move or overlap. A `salt`
    gives a split independent of the others made from the same texts."""
    return int.from_bytes(hashlib.sha256((salt + text).encode()).digest()[:8], "big") / 2**64


def split_of(question: str) -> str:
    """The split a question belongs to, from a stable hash of its text."""
    u = stable_fraction(question)
    acc = 0.0
    for split, frac in SPLIT_FRACTIONS.items():
        acc += frac
        if u < acc:
            return split
    return SPLITS[-1]


def build_world(
    cfg: WorldConfig, sizes: dict[str, int], seed: int = 0, max_tries_factor: int = 200
) -> dict[str, list[Problem]]:
    """Distinct problems for each requested split, e.g. ``{"train": 2000, "test": 500}``.

    Problems are drawn in order from a seeded stream and kept by the split their question hashes
    to, so no question can ever be in two splits, across calls, sizes and seeds.
    """
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {SPLITS}")
    total = sum(sizes.values())
    if total <= 0:
        raise ValueError(f"sizes must ask for at least one problem, got {sizes}")
    rng = random.Random(seed)
    out: dict[str, list[Problem]] = {s: [] for s in sizes}
    seen: set[str] = set()
    for _ in range(total * max_tries_factor):
        if all(len(out[s]) >= n for s, n in sizes.items()):
            return out
        p = generate_problem(rng, cfg)
        split = split_of(p.question)
        if p.question in seen or len(out.get(split, ())) >= sizes.get(split, 0):
            continue
        seen.add(p.question)
        out[split].append(
            Problem(
                id=f"world-{split}-{len(out[split]):06d}",
                question=p.question,
                name=p.name,
                obj=p.obj,
                computations=p.computations,
                story_numbers=p.story_numbers,
                split=split,
                config=p.config,
            )
        )
    raise RuntimeError(f"could not draw {sizes} distinct problems; widen the world's ranges")


# ------------------------------------------------------------------------------- corruptions


def _continue_chain(problem: Problem, start: int, value: int) -> list[Computation] | None:
    """Apply the gold operations from `start` on to a (wrong) value; None if it leaves the world."""
    out = []
    for comp in problem.computations[start:]:
        c = apply(comp.op, value, comp.b)
        if c is None:
            return None
        out.append(Computation(value, comp.op, comp.b, c))
        value = c
    return out


def _corrupt_step(
    rng: random.Random, problem: Problem, k: int, kind: ErrorKind
) -> list[Computation] | None:
    """The computations of a solution whose first error, of `kind`, is at step k."""
    gold = list(problem.computations)
    comp = gold[k]
    if kind == "skip":
        if k >= len(gold) - 1:
            return None
        prev = gold[k - 1].c if k > 0 else None
        if prev is None:
            return None  # the first step sets the starting value; skipping it has no meaning
        rest = _continue_chain(problem, k + 1, prev)
        return None if rest is None else gold[:k] + rest
    if kind == "slip":
        deltas = [-10, -2, -1, 1, 2, 10]
        rng.shuffle(deltas)
        for d in deltas:
            wrong = Computation(comp.a, comp.op, comp.b, comp.c + d)
            if wrong.c > 0:
                break
        else:
            return None
    elif kind == "operand":
        candidates = sorted({n for n in problem.story_numbers if n != comp.b})
        rng.shuffle(candidates)
        for b in candidates:
            c = apply(comp.op, comp.a, b)
            if c is not None:
                wrong = Computation(comp.a, comp.op, b, c)
                break
        else:
            return None
    elif kind == "operation":
        ops = [o for o in ("+", "-", "*", "/") if o != comp.op]
        rng.shuffle(ops)
        for op in ops:
            c = apply(op, comp.a, comp.b)
            if c is not None and c != comp.c:
                wrong = Computation(comp.a, op, comp.b, c)  # type: ignore[arg-type]
                break
        else:
            return None
    else:
        raise ValueError(f"unknown error kind {kind!r}")
    rest = _continue_chain(problem, k + 1, wrong.c)
    return None if rest is None else gold[:k] + [wrong] + rest


def corrupt(
    problem: Problem,
    rng: random.Random,
    kinds: Sequence[ErrorKind] = ERROR_KINDS,
    position: int | None = None,
    max_tries: int = 100,
) -> Trajectory | None:
    """A wrong solution with exactly one error of a known kind; None if none can be made.

    Steps after the error continue consistently from the wrong value, so the final answer is wrong
    and the first error is exact.
    """
    for _ in range(max_tries):
        kind = rng.choice(list(kinds))
        k = position if position is not None else rng.randrange(problem.n_steps)
        comps = _corrupt_step(rng, problem, k, kind)
        # The error must show at step k (skipping one of two identical operations would not).
        if (
            comps is None
            or comps[k] == problem.computations[k]
            or str(comps[-1].c) == problem.answer
        ):
            continue
        steps = [c.render(problem.name, problem.obj) for c in comps]
        return Trajectory(
            id=f"{problem.id}-err-{kind}-{k}",
            question=problem.question,
            steps=steps,
            gold_answer=problem.answer,
            final_answer=str(comps[-1].c),
            step_labels=labels_from_first_error(len(steps), k),
            first_error=k,
            source="arithmetic-world",
            metadata={
                "problem_id": problem.id,
                "split": problem.split,
                "n_steps": problem.n_steps,
                "kind": "corrupted",
                "error_kind": kind,
            },
        )
    return None


# ------------------------------------------------------------------------------- grading


@dataclass(frozen=True)
class StepGrade:
    """Exact truth for a solution's steps against a problem's gold chain."""

    step_labels: list[bool]
    first_error: int | None
    final_correct: bool


def grade_steps(problem: Problem, steps: Sequence[str], final_answer: str | None) -> StepGrade:
    """Grade any solution of a world problem step by step.

    Step i is right when it states the gold computation i exactly (same operands, operation and
    result). Labels are prefix labels: False from the first wrong step on. When every step is right
    but the solution stops early or states a wrong answer, the error is in the answer line, which is
    no step: all labels are True and `first_error` is None (unknown as a step index).
    """
    gold = problem.computations
    labels: list[bool] = []
    ok = True
    for i, step in enumerate(steps):
        m = STEP_RE.match(step.strip())
        if ok:
            ok = (
                m is not None
                and i < len(gold)
                and (int(m["a"]), m["op"], int(m["b"]), int(m["c"]))
                == (gold[i].a, gold[i].op, gold[i].b, gold[i].c)
            )
        labels.append(ok)
    final_correct = final_answer is not None and final_answer.strip() == problem.answer
    if not all(labels):
        first_error: int | None = labels.index(False)
    elif len(steps) == len(gold) and final_correct:
        first_error = -1
    else:
        first_error = None
    return StepGrade(labels, first_error, final_correct)


def graded_trajectory(
    problem: Problem, steps: list[str], final_answer: str | None, tid: str, **metadata: Any
) -> Trajectory:
    """A solution of a world problem (e.g. sampled from an LM) with its exact step truth."""
    grade = grade_steps(problem, steps, final_answer)
    return Trajectory(
        id=tid,
        question=problem.question,
        steps=steps,
        gold_answer=problem.answer,
        final_answer=final_answer,
        step_labels=grade.step_labels,
        first_error=grade.first_error,
        source="arithmetic-world",
        metadata={
            "problem_id": problem.id,
            "split": problem.split,
            "n_steps": problem.n_steps,
            "final_correct": grade.final_correct,
            **metadata,
        },
    )


# ------------------------------------------------------------------------------- benchmark


def subsets_by_length(cfg: WorldConfig, n_subsets: int = 3) -> dict[str, tuple[int, int]]:
    """Difficulty subsets of a world: its step-count range cut into up to three bins."""
    lengths = list(range(cfg.min_steps, cfg.max_steps + 1))
    n = min(n_subsets, len(lengths))
    names = {1: ["all"], 2: ["short", "long"], 3: ["short", "medium", "long"]}[n]
    bins: dict[str, tuple[int, int]] = {}
    for i, name in enumerate(names):
        chunk = lengths[i * len(lengths) // n : (i + 1) * len(lengths) // n]
        bins[name] = (chunk[0], chunk[-1])
    return bins


def make_benchmark(
    problems: Iterable[Problem],
    n_per_subset: int,
    subsets: dict[str, tuple[int, int]],
    seed: int = 0,
) -> dict[str, list[Trajectory]]:
    """A ProcessBench-style benchmark: subsets by number of steps, half correct, half erroneous.

    Each problem contributes one trajectory (its gold solution or one corruption), so the items of
    a subset are independent. Error kinds and positions are drawn uniformly.
    """
    rng = random.Random(seed)
    pool = list(problems)
    out: dict[str, list[Trajectory]] = {}
    for name, (lo, hi) in subsets.items():
        eligible = [p for p in pool if lo <= p.n_steps <= hi]
        rng.shuffle(eligible)
        plan = [True] * (n_per_subset // 2) + [False] * (n_per_subset - n_per_subset // 2)
        rng.shuffle(plan)
        remaining = iter(eligible)
        items: list[Trajectory] = []
        for want_error in plan:
            for p in remaining:
                t = corrupt(p, rng) if want_error else p.gold_trajectory()
                if t is not None:
                    t.metadata["subset"] = name
                    items.append(t)
                    break
            else:
                raise ValueError(
                    f"subset {name!r} ({lo}-{hi} steps): only {len(items)} of {n_per_subset} "
                    "items could be made; give more problems of that length"
                )
        out[name] = items
    return out


def to_processbench_rows(
    trajectories: Iterable[Trajectory], generator: str = "arithmetic-world"
) -> list[dict[str, Any]]:
    """Rows in the `Qwen/ProcessBench` schema, so the paper-scale loader reads the benchmark too."""
    rows = []
    for t in trajectories:
        if t.first_error is None:
            raise ValueError(f"trajectory {t.id!r}: field 'first_error' unknown; cannot export")
        rows.append(
            {
                "id": t.id,
                "generator": generator,
                "problem": t.question,
                "steps": list(t.steps),
                "final_answer_correct": t.first_error == -1,
                "label": t.first_error,
            }
        )
    return rows
