"""The two tracks: the hub track reads real GSM8K files and ProcessBench-schema files with stable,
disjoint dev/test splits; the embedded world round-trips through the hub schemas; bad sources and
settings fail with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.data.rows import DatasetUnavailableError
from cpmi_lib.data.world import stable_fraction
from cpmi_lib.data.world_data import WorldSpec, export_hub_schemas, load_benchmark
from cpmi_lib.experiment.hub_spec import EMBEDDED, HubSpec
from cpmi_lib.experiment.tracks import EmbeddedTrack, HubTrack, make_track
from cpmi_lib.lm.default_lm import LMTrainConfig
from cpmi_lib.lm.load import ModelUnavailableError

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="module")
def world_spec(tiny_world) -> WorldSpec:
    return WorldSpec(
        world=tiny_world, sizes={"train": 30, "dev": 40, "test": 40}, benchmark_per_subset=8
    )


def hub_track(tmp_path: Path, world: WorldSpec | None = None, **spec) -> HubTrack:
    return HubTrack(HubSpec(**spec), world or WorldSpec(), LMTrainConfig(), tmp_path)


def write_processbench(folder: Path, subsets: dict[str, int]) -> Path:
    """A local ProcessBench snapshot: one JSONL a subset and a card naming them as splits."""
    folder.mkdir(parents=True)
    for subset, n in subsets.items():
        rows = [
            {
                "id": f"{subset}-{i}",
                "generator": "test",
                "problem": f"What is {i} + 1?",
                "steps": [f"{i} + 1 = {i + 1}.", f"The answer is {i + 1}."],
                "final_answer_correct": i % 2 == 0,
                "label": -1 if i % 2 == 0 else 1,
            }
            for i in range(n)
        ]
        (folder / f"{subset}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = "".join(f"  - split: {s}\n    path: {s}.jsonl\n" for s in subsets)
    (folder / "README.md").write_text(
        f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}---\n"
    )
    return folder


def test_stable_fraction_is_fixed_and_salt_makes_it_independent():
    assert stable_fraction("q") == stable_fraction("q")
    assert 0.0 <= stable_fraction("q") < 1.0
    assert stable_fraction("q", "a:") != stable_fraction("q")
    xs = [stable_fraction(f"question {i}") for i in range(2000)]
    assert 0.45 < sum(x < 0.5 for x in xs) / len(xs) < 0.55


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dev_fraction", 0.0, "dev_fraction must be in"),
        ("processbench_dev_fraction", 1.0, "processbench_dev_fraction must be in"),
        ("processbench_subsets", (), "processbench_subsets is empty"),
        ("model", "", "model is empty"),
    ],
)
def test_hub_spec_rejects_bad_settings(field, value, message):
    with pytest.raises(ValueError, match=message):
        HubSpec(**{field: value})


def test_hub_problems_from_real_gsm8k_files(tmp_path):
    track = hub_track(tmp_path, problems=str(GSM8K), problems_config=None, dev_fraction=0.1)
    train = track.problems("train", 10_000)
    dev = track.problems("dev", 10_000)
    assert len(train) + len(dev) == 7473  # every train row, in exactly one of the two
    assert 0.08 < len(dev) / 7473 < 0.12
    assert not {t.question for t in train} & {t.question for t in dev}
    assert [t.id for t in track.problems("dev", 5)] == [t.id for t in dev[:5]]  # stable order
    test = track.problems("test", 7)
    assert [t.id for t in test] == [f"gsm8k-test-{i}" for i in range(7)]
    assert all(t.gold_answer for t in test) and not track.step_truth
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        track.problems("validation", 3)


def test_hub_benchmark_splits_every_subset_into_disjoint_dev_and_test(tmp_path):
    pb = write_processbench(tmp_path / "pb", {"gsm8k": 40, "math": 30})
    track = hub_track(
        tmp_path,
        processbench=str(pb),
        processbench_subsets=("gsm8k", "math"),
    )
    dev, test = track.benchmark("dev"), track.benchmark("test")
    assert set(dev) == set(test) == {"gsm8k", "math"}
    for subset, n in (("gsm8k", 40), ("math", 30)):
        ids_dev = {t.id for t in dev[subset]}
        ids_test = {t.id for t in test[subset]}
        assert not ids_dev & ids_test and len(ids_dev | ids_test) == n
        assert 0 < len(ids_dev) < len(ids_test)  # 30% dev
    assert all(t.first_error in (-1, 1) for t in test["math"])
    missing = hub_track(tmp_path, processbench=str(pb), processbench_subsets=("omnimath",))
    with pytest.raises(ValueError, match=r"subset 'omnimath'.*Unknown split"):
        missing.benchmark("test")


def test_world_round_trips_through_the_hub_schemas(tmp_path, world_spec):
    track = hub_track(
        tmp_path,
        world_spec,
        problems=EMBEDDED,
        processbench=EMBEDDED,
        processbench_subsets=("short", "long"),
        dev_fraction=0.3,
    )
    world_dir = track.world_dir
    exported = export_hub_schemas(world_dir)
    assert export_hub_schemas(world_dir) == exported  # written once
    train, dev = track.problems("train", 1000), track.problems("dev", 1000)
    assert len(train) + len(dev) == 70  # world train + dev
    assert 0 < len(dev) < len(train)
    gold = {t.question: t for t in read_trajectories(world_dir / "gold-test.jsonl")}
    test = track.problems("test", 1000)
    assert len(test) == 40
    for t in test:
        assert t.steps == gold[t.question].steps and t.gold_answer == gold[t.question].gold_answer
    world_items = {
        t.id: t for s in ("dev", "test") for v in load_benchmark(world_dir, s).values() for t in v
    }
    hub_items = [t for s in ("dev", "test") for v in track.benchmark(s).values() for t in v]
    assert len(hub_items) == len(world_items)
    for t in hub_items:
        original = world_items[t.id.removeprefix("processbench-")]
        assert t.steps == original.steps and t.first_error == original.first_error


def test_unknown_hub_model_and_data_set_fail_clearly(tmp_path):
    track = hub_track(
        tmp_path, model="no-such-org/no-such-model", device="cpu", problems="no-such-org/data"
    )
    with pytest.raises(ModelUnavailableError, match="no-such-org/no-such-model"):
        track.lm()
    with pytest.raises(DatasetUnavailableError, match="no-such-org/data"):
        track.problems("test", 3)


def test_make_track_picks_the_track(tmp_path, world_spec, tiny_lm_config, tiny_lm_cache):
    embedded = make_track(None, world_spec, tiny_lm_config, tiny_lm_cache)
    assert isinstance(embedded, EmbeddedTrack) and embedded.step_truth
    assert embedded.prm_backbone == embedded.model_path
    problems = embedded.problems("train", 5)
    assert len(problems) == 5 and all(p.split == "train" for p in problems)
    hub = make_track(
        HubSpec(model=EMBEDDED, prm_backbone="some/backbone", device="cpu"),
        world_spec,
        tiny_lm_config,
        tiny_lm_cache,
    )
    assert isinstance(hub, HubTrack)
    assert hub.model_path == embedded.model_path and hub.prm_backbone == "some/backbone"
    model, tokenizer = hub.lm()
    assert hub.lm()[0] is model  # loaded once
    described = embedded.describe()  # cached files relative to the cache: no machine paths
    assert described["LM"].startswith("<cache>/models/") and described["world"].startswith(
        "<cache>/worlds/"
    )
    assert hub.describe()["PRM backbone"] == "some/backbone"


def test_hub_benchmark_keeps_all_solutions_of_a_problem_on_one_side(tmp_path):
    """ProcessBench has several solutions per problem: τ chosen on one solution of a problem and
    reported on another would leak, so dev and test are split by problem, not by item id."""
    folder = tmp_path / "pb"
    folder.mkdir()
    rows = [
        {
            "id": f"gsm8k-{p}-{k}",
            "generator": f"model-{k}",
            "problem": f"What is {p} + 1?",
            "steps": [f"{p} + 1 = {p + 1 + (k % 2)}.", "So that is it."],
            "final_answer_correct": k % 2 == 0,
            "label": -1 if k % 2 == 0 else 0,
        }
        for p in range(30)
        for k in range(4)
    ]
    (folder / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    track = hub_track(
        tmp_path, processbench=str(folder / "gsm8k.jsonl"), processbench_subsets=("gsm8k",)
    )
    dev, test = track.benchmark("dev")["gsm8k"], track.benchmark("test")["gsm8k"]
    problems_dev, problems_test = {t.question for t in dev}, {t.question for t in test}
    assert problems_dev and problems_test and not problems_dev & problems_test
    assert len(dev) == 4 * len(problems_dev) and len(test) == 4 * len(problems_test)
    assert len(dev) + len(test) == len(rows)
