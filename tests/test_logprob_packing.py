"""The packed engine's batch building against slow, obvious versions of each part: the node ids,
the rows and the tree masks must be exactly those of inserting and testing node by node, so its
log-probabilities stay bit for bit those of the per-node construction it replaced."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cpmi_lib.lm.logprob import ScoreRequest, _pack_rows, _request_paths, _tree_mask, _Trie


def random_requests(seed: int, n_contexts: int = 12, answers: int = 4) -> list[ScoreRequest]:
    """Contexts that share a prompt and extend one another, each scored against a few answers
    that share a prefix: the shapes of CPMI's requests."""
    rng = random.Random(seed)
    prompt = [1] + [rng.randrange(4, 30) for _ in range(rng.randrange(1, 8))]
    contexts, ctx = [], list(prompt)
    for _ in range(n_contexts):
        if rng.random() < 0.3:
            ctx = list(prompt)  # another template or a leave-one-out context
        ctx = ctx + [rng.randrange(4, 30) for _ in range(rng.randrange(1, 6))]
        contexts.append(tuple(ctx))
    targets = [
        tuple([5, 6] + [rng.randrange(4, 30) for _ in range(rng.randrange(1, 4))])
        for _ in range(answers)
    ]
    requests = [ScoreRequest(c, t) for c in contexts for t in targets]
    rng.shuffle(requests)
    return requests + requests[:3]  # repeated requests too


def obvious_paths(requests: list[ScoreRequest]) -> tuple[_Trie, list[list[int]]]:
    trie = _Trie()
    return trie, [trie.insert(r.context + r.target) for r in requests]


def obvious_rows(paths, order, max_row_tokens):
    """Count each request's new nodes one membership test at a time."""
    rows, members, current, current_members = [], [], set(), []
    for i in order:
        n_new = sum(n not in current for n in paths[i])
        if current and len(current) + n_new > max_row_tokens:
            rows.append(sorted(current))
            members.append(current_members)
            current, current_members = set(), []
        current.update(paths[i])
        current_members.append(i)
    rows.append(sorted(current))
    members.append(current_members)
    return rows, members


def obvious_mask(trie: _Trie, rows: list[list[int]], width: int) -> np.ndarray:
    """Node by node: a node sees what its parent sees, and itself; padding sees itself."""
    allowed = np.zeros((len(rows), width, width), dtype=bool)
    for b, row in enumerate(rows):
        index = {node: j for j, node in enumerate(row)}
        for j, node in enumerate(row):
            if trie.parent[node] >= 0:
                allowed[b, j] = allowed[b, index[trie.parent[node]]]
            allowed[b, j, j] = True
        np.fill_diagonal(allowed[b], True)
    return allowed


@pytest.mark.parametrize("seed", range(6))
def test_paths_share_node_ids_with_whole_insertion(seed):
    requests = random_requests(seed)
    trie = _Trie()
    paths = _request_paths(trie, requests)
    slow_trie, slow_paths = obvious_paths(requests)
    assert paths == slow_paths
    assert (trie.token, trie.parent, trie.depth) == (
        slow_trie.token,
        slow_trie.parent,
        slow_trie.depth,
    )


@pytest.mark.parametrize(("seed", "max_row_tokens"), [(s, n) for s in range(6) for n in (1, 9, 40)])
def test_rows_equal_the_node_by_node_packing(seed, max_row_tokens):
    requests = random_requests(seed)
    _, paths = obvious_paths(requests)
    order = sorted(range(len(requests)), key=lambda i: requests[i].context + requests[i].target)
    rows, members = _pack_rows(paths, order, max_row_tokens)
    assert (rows, members) == obvious_rows(paths, order, max_row_tokens)
    assert sorted(i for m in members for i in m) == list(range(len(requests)))
    if max_row_tokens == 40:
        assert len(rows) > 1  # the case that splits rows is exercised


@pytest.mark.parametrize("seed", range(6))
def test_tree_mask_equals_the_node_by_node_mask(seed):
    requests = random_requests(seed)
    trie, paths = obvious_paths(requests)
    order = sorted(range(len(requests)), key=lambda i: requests[i].context + requests[i].target)
    rows, _ = _pack_rows(paths, order, max_row_tokens=30)
    width = max(len(r) for r in rows)
    parent_col = np.full((len(rows), width), -1, dtype=np.int64)
    for b, row in enumerate(rows):
        index = {node: j for j, node in enumerate(row)}
        for j, node in enumerate(row):
            if trie.parent[node] >= 0:
                parent_col[b, j] = index[trie.parent[node]]
    mask = _tree_mask(parent_col)
    assert np.array_equal(mask, obvious_mask(trie, rows, width))
    assert mask.sum() > len(rows) * width  # nodes see ancestors, not only themselves
