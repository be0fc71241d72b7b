"""The grid profile's summary: inclusive seconds per function, each stack counted once."""

from benchmarks.grid_profile import inclusive_seconds, seconds_within, summary


def test_inclusive_seconds_counts_a_recurring_function_once_per_stack():
    lines = [
        "main (a.py:1);f (b.py:3);f (b.py:7);g (c.py:2) 10",
        "main (a.py:1);g (c.py:9) 5",
        "",
    ]
    total, seconds = inclusive_seconds(lines, rate=5.0)
    assert total == 3.0
    assert seconds["f (b.py)"] == 2.0  # twice in one stack, counted once
    assert seconds["g (c.py)"] == 3.0  # line numbers dropped: both stacks
    assert seconds["main (a.py)"] == 3.0


def test_summary_orders_named_functions_by_seconds():
    lines = [
        "k;answer_deltas (cpmi_lib/labeling/cpmi.py:201) 30",
        "k;mc_block (cpmi_lib/labeling/mc.py:170) 10",
    ]
    text = summary(lines, rate=1.0)
    assert "Sampled seconds in all: 40" in text
    assert text.index("`answer_deltas`") < text.index("`mc_block`")
    assert "| 30 | 75% | `answer_deltas`" in text


def test_seconds_within_counts_only_calls_below_the_outer_frame():
    lines = [
        "k;packed_logprobs (x.py:1);Module._wrapped_call_impl (m.py:2) 6",
        "k;Module._wrapped_call_impl (m.py:2);packed_logprobs (x.py:1) 3",  # above, not below
        "k;packed_logprobs (x.py:5) 1",
    ]
    assert (
        seconds_within(lines, 1.0, "packed_logprobs (x.py)", "Module._wrapped_call_impl (m.py)")
        == 6
    )
