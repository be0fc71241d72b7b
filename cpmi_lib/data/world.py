"""The arithmetic world: generated multi-step word problems whose step truth is known exactly.

Each problem is a short story about a person and a pile of objects, changed by a chain of
operations (+ − × ÷ with integer intermediate results) and padded with distractor sentences.
Its gold solution has one computation per step (``Ava has 12 + 7 = 19 apples.``). This module
generates the problems and their splits; `world_errors` makes wrong solutions with one error of a
known kind at a known step, `world_grading` grades any solution step by step, and
`world_benchmark` assembles a ProcessBench-style benchmark from them.

Everything is deterministic by seed, and the splits are disjoint by construction: a problem's
split is decided by a fixed hash of its question text, whatever sizes or seed are asked for. The
"lm" split trains the policy LM; "train", "dev" and "test" serve the labelers and PRMs, so the
policy has never seen the problems it is asked to solve.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cpmi_lib.core.trajectory import Trajectory

Op = Literal["+", "-", "*", "/"]
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
