"""Hard negatives: always wrong, distinct under equivalence, in source order, seeded.

The `lm` source is tested twice: on a scripted stub model (exact order and cost accounting) and
on a miniature world LM trained for a few seconds (the real generation path).
"""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest
import torch

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.data.world import WorldConfig, build_world
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.labeling.negatives import (
    NEGATIVE_SOURCES,
    Negative,
    hard_negatives,
    mine_trajectory_numbers,
    negatives_for_trajectory,
    perturbations,
)

HAND_STEPS = ["Ava has 12 + 7 = 19 apples.", "Ava has 19 * 2 = 38 apples."]
#: Every perturbation of "38": ±1, ±2, ±10, ×0.9 → 34, ×1.1 → 42, digit swap 83, sign flip.
PERTURB_38 = ["39", "37", "40", "36", "48", "28", "34", "42", "83", "-38"]
OFFLINE_SOURCES = [
    ("trajectory",),
    ("perturb",),
    ("trajectory", "perturb"),
    ("perturb", "trajectory"),
]


def same(a: str, b: str) -> bool:
    return answers_equivalent(a, b) or answers_equivalent(b, a)


def assert_valid(negs: list[Negative], gold: str, m: int, sources: tuple[str, ...]) -> None:
    """Wrong, pairwise distinct under equivalence, at most m, drawn in the order of `sources`."""
    assert len(negs) <= m
    for n in negs:
        assert not same(gold, n.answer), (gold, n)
    for x, y in itertools.combinations(negs, 2):
        assert not same(x.answer, y.answer), (x, y)
    order = [sources.index(n.source) for n in negs]
    assert order == sorted(order)


# ------------------------------------------------------------------------------- offline sources


def test_hand_made_case_exact():
    # results first (19; 38 is the gold), then the other numbers, most recent first
    assert mine_trajectory_numbers(HAND_STEPS) == ["38", "19", "2", "7", "12"]
    shuffled = list(PERTURB_38)
    random.Random(0).shuffle(shuffled)
    assert perturbations("38", seed=0) == shuffled
    negs = hard_negatives("q", HAND_STEPS, "38", 6)
    assert negs == [Negative(a, "trajectory") for a in ["19", "2", "7", "12"]] + [
        Negative(a, "perturb") for a in shuffled[:2]
    ]
    # perturb first when listed first
    negs = hard_negatives("q", HAND_STEPS, "38", 20, sources=("perturb", "trajectory"))
    assert [n.answer for n in negs] == shuffled + ["19", "2", "7", "12"]


def test_mining_reads_decimals_dollars_separators_and_signs():
    steps = ["She pays $1,250.50 for 3 boxes.", "Then 12-7 = -5, not x2 or 3.140.", "So = $1,300."]
    assert mine_trajectory_numbers(steps) == ["1300", "-5", "3.14", "7", "12", "3", "1250.5"]


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("0", {"1", "-1", "2", "-2", "10", "-10"}),
        ("-2", {"-1", "-3", "0", "-4", "8", "-12", "2"}),
        ("1,000", {"1001", "999", "1002", "998", "1010", "990", "900", "1100", "-1000"}),
        ("0.5", {"1.5", "-0.5", "2.5", "-1.5", "10.5", "-9.5", "0.45", "0.55"}),
        (
            "3/4",
            {"7/4", "-1/4", "11/4", "-5/4", "43/4", "-37/4", "27/40", "33/40", "4/3", "1", "-3/4"},
        ),
        (
            "\\frac{1}{2}",
            {
                "\\frac{3}{2}",
                "-\\frac{1}{2}",
                "\\frac{5}{2}",
                "-\\frac{3}{2}",
                "\\frac{21}{2}",
                "-\\frac{19}{2}",
                "\\frac{9}{20}",
                "\\frac{11}{20}",
                "2",
                "1",
            },
        ),
        ("105", {"106", "104", "107", "103", "115", "95", "116", "150", "-105"}),  # ×0.9 → 95
        ("\\sqrt{2}", set()),
        ("x + 1", set()),
        ("yes", set()),
    ],
)
def test_perturbations_of_various_golds(gold, expected):
    got = perturbations(gold, seed=0)
    assert set(got) == expected and len(got) == len(expected)
    negs = hard_negatives("q", ["x = 5"], gold, 20, sources=("perturb",))
    assert [n.answer for n in negs] == got  # each is wrong and they are pairwise distinct
    for sources in OFFLINE_SOURCES:
        assert_valid(
            hard_negatives("q", ["x = 5", "y = 0.5 + 3/4"], gold, 8, sources=sources),
            gold,
            8,
            sources,
        )


def test_distinct_under_equivalence():
    # 0.45 and 1.5 from the trajectory are \frac{9}{20} and \frac{3}{2} among the perturbations
    negs = hard_negatives("q", ["x = 0.45", "y = 1.5"], "\\frac{1}{2}", 20)
    answers = [n.answer for n in negs]
    assert answers[:2] == ["1.5", "0.45"]
    assert "\\frac{3}{2}" not in answers and "\\frac{9}{20}" not in answers
    assert len(answers) == 2 + 10 - 2
    assert_valid(negs, "\\frac{1}{2}", 20, ("trajectory", "perturb"))
    # "18.0" is the gold 18 and never a negative, whatever its spelling
    assert hard_negatives("q", ["a = 18.0", "b = 18"], "18", 5, sources=("trajectory",)) == []


def test_world_trajectories_never_give_the_gold():
    problems = build_world(WorldConfig(), {"test": 60}, seed=3)["test"]
    rng = random.Random(0)
    n_corrupted = 0
    for p in problems:
        trajs = [p.gold_trajectory()]
        bad = corrupt(p, rng)
        if bad is not None:
            trajs.append(bad)
            n_corrupted += 1
            # the corrupted trajectory's wrong final value is its most recent result
            mined = negatives_for_trajectory(bad, 3, sources=("trajectory",))
            assert mined[0] == Negative(bad.final_answer, "trajectory")
        for t, sources in itertools.product(trajs, OFFLINE_SOURCES):
            negs = negatives_for_trajectory(t, 6, sources=sources, seed=len(t.steps))
            if "perturb" in sources:
                assert len(negs) == 6  # an integer gold has at least 6 perturbations
            assert_valid(negs, p.answer, 6, sources)
    assert n_corrupted >= 50


def test_seeded_order():
    a = hard_negatives("q", [], "538", 20, sources=("perturb",), seed=0)
    assert a == hard_negatives("q", [], "538", 20, sources=("perturb",), seed=0)
    b = hard_negatives("q", [], "538", 20, sources=("perturb",), seed=1)
    assert a != b and {n.answer for n in a} == {n.answer for n in b}
    firsts = {perturbations("538", seed=s)[0] for s in range(10)}
    assert len(firsts) > 1  # not always "+1" first


def test_up_to_m():
    assert [n.answer for n in hard_negatives("q", [], "0", 3, sources=("perturb",))] == (
        perturbations("0")[:3]
    )
    assert len(hard_negatives("q", [], "0", 10, sources=("perturb",))) == 6
    assert hard_negatives("q", HAND_STEPS, "38", 0) == []
    assert hard_negatives("q", HAND_STEPS, "38", 3, sources=()) == []
    with pytest.raises(ValueError, match="m must be"):
        hard_negatives("q", HAND_STEPS, "38", -1)


def test_errors():
    with pytest.raises(ValueError, match="needs model and tokenizer"):
        hard_negatives("q", HAND_STEPS, "38", 3, sources=("lm",))
    with pytest.raises(ValueError, match="needs tokenizer"):
        hard_negatives("q", HAND_STEPS, "38", 3, sources=("lm",), model=object())
    with pytest.raises(ValueError, match="known") as err:
        hard_negatives("q", HAND_STEPS, "38", 3, sources=("trajectory", "guess"))
    assert "'guess'" in str(err.value) and all(s in str(err.value) for s in NEGATIVE_SOURCES)
    with pytest.raises(ValueError, match="not the string"):
        hard_negatives("q", HAND_STEPS, "38", 3, sources="perturb")
    t = Trajectory(id="t1", question="q", steps=HAND_STEPS)
    with pytest.raises(RecordError, match="gold_answer") as err:
        negatives_for_trajectory(t, 3)
    assert err.value.field == "gold_answer" and err.value.where == "trajectory 't1'"


# ------------------------------------------------------------------------------- lm source

EOS = 1


class ScriptedTokenizer:
    """Just enough of a tokenizer for `generate_texts`: row k of a batch decodes to script[k]."""

    pad_token_id = 0
    eos_token_id = EOS

    def __init__(self, script: list[str]):
        self.script = script

    def __call__(self, text: str) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[5, 6, 7])

    def batch_decode(self, rows: torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        return [self.script[int(row[0]) - 10] for row in rows]


class ScriptedModel(torch.nn.Module):
    """Generates one token (10 + row index) and EOS per returned sequence."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def generate(self, input_ids, num_return_sequences, **kw):
        self.calls += 1
        rows = input_ids.repeat_interleave(num_return_sequences, dim=0)
        new = torch.tensor([[10 + k, EOS] for k in range(len(rows))])
        return torch.cat([rows, new], dim=1)


SCRIPT = [
    "Ava has 1 + 2 = 3 apples.\nThe answer is: 7",
    "The answer is: 5",
    "The answer is: 7.0",  # the same answer as "7"
    "no answer here",
    "The answer is: 5",
    "The answer is: 9",  # the gold
    "#### 5",
    "The answer is: \\frac{1}{2}",
]


def test_lm_source_on_a_scripted_model():
    model, tok = ScriptedModel(), ScriptedTokenizer(SCRIPT)
    meter = CostMeter()
    negs = hard_negatives(
        "q",
        [],
        "9",
        5,
        sources=("lm",),
        model=model,
        tokenizer=tok,
        lm_samples=len(SCRIPT),
        meter=meter,
    )
    # most frequent first: 5 (three times), 7 (twice, as "7" and "7.0"), 1/2 (once)
    assert negs == [Negative("5", "lm"), Negative("7", "lm"), Negative("\\frac{1}{2}", "lm")]
    assert meter.costs.generated_tokens == 2 * len(SCRIPT)  # one token and EOS each
    assert meter.costs.generate_calls == 1 and meter.costs.forward_tokens == 3 * len(SCRIPT)
    # the LM is not sampled when earlier sources already supply m negatives
    negs = hard_negatives(
        "q",
        HAND_STEPS,
        "38",
        3,
        sources=("trajectory", "lm"),
        model=model,
        tokenizer=tok,
        lm_samples=len(SCRIPT),
    )
    assert [n.source for n in negs] == ["trajectory"] * 3 and model.calls == 1
    # and answers already given by an earlier source are not repeated
    negs = hard_negatives(
        "q",
        ["x = 5"],
        "9",
        5,
        sources=("trajectory", "lm"),
        model=model,
        tokenizer=tok,
        lm_samples=len(SCRIPT),
    )
    assert negs == [
        Negative("5", "trajectory"),
        Negative("7", "lm"),
        Negative("\\frac{1}{2}", "lm"),
    ]


def test_lm_source_on_a_miniature_world_lm(tiny_lm, tiny_world):
    model, tok = tiny_lm
    problems = build_world(tiny_world, {"test": 3}, seed=0)["test"]
    found = 0
    for p in problems:
        meter = CostMeter()
        kw = dict(
            sources=("lm",), model=model, tokenizer=tok, lm_samples=16, lm_max_new_tokens=48, seed=1
        )
        negs = hard_negatives(p.question, [], p.answer, 4, meter=meter, **kw)
        assert negs == hard_negatives(p.question, [], p.answer, 4, **kw)  # seeded
        assert all(n.source == "lm" for n in negs)
        assert_valid(negs, p.answer, 4, ("lm",))
        assert 0 < meter.costs.generated_tokens <= 16 * 48
        assert meter.costs.generate_calls == 1
        found += len(negs)
    assert found > 0, "the miniature LM states some wrong answers"
