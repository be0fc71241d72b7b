"""Log-probabilities of target token sequences after context token sequences, two ways.

`reference_logprobs` is the slow, obvious definition: one forward pass per (context, target)
pair. `packed_logprobs` gives the same numbers without re-encoding shared text: all sequences go
into a prefix trie, so every distinct prefix (a context shared by several answers, the prompt
shared by every context, the ``The answer is:`` shared by every answer) is one node, encoded once.
Trie nodes are packed into rows with a tree attention mask (a node sees exactly its ancestors) and
position ids equal to the node's depth, so each node computes what it would in its own sequence.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from cpmi_lib.core.costs import CostMeter


@dataclass(frozen=True)
class ScoreRequest:
    """Score `target` token ids as the continuation of `context` token ids."""

    context: tuple[int, ...]
    target: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.context:
            raise ValueError("a context needs at least one token (e.g. BOS) to predict the target")
        if not self.target:
            raise ValueError("empty target: nothing to score")


class SequenceTooLongError(ValueError):
    """A context plus target longer than the model's position limit."""


def max_positions(model: PreTrainedModel) -> int | None:
    """The model's position limit from its config (None: unknown, e.g. no config)."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_lengths(model: PreTrainedModel, requests: Sequence[ScoreRequest]) -> None:
    limit = max_positions(model)
    if limit is None:
        return
    for r in requests:
        n = len(r.context) + len(r.target)
        if n > limit:
            raise SequenceTooLongError(
                f"context ({len(r.context)} tokens) + answer ({len(r.target)} tokens) = {n} tokens "
                f"exceeds the model's limit of {limit} positions"
            )


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def reference_logprobs(
    model: PreTrainedModel, requests: Sequence[ScoreRequest], meter: CostMeter | None = None
) -> list[torch.Tensor]:
    """Per-token log p(target_j | context + target_<j), one unpadded forward pass per request."""
    check_lengths(model, requests)
    out = []
    for r in requests:
        ids = torch.tensor([r.context + r.target], device=_device(model))
        logits = model(input_ids=ids).logits[0].float()
        logp = torch.log_softmax(logits[len(r.context) - 1 : -1], dim=-1)
        out.append(logp.gather(1, ids[0, len(r.context) :, None])[:, 0].cpu())
        if meter is not None:
            meter.add_forward(ids.shape[1])
    return out


def _supports_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


class _Trie:
    """Token sequences merged on common prefixes; a parent's id is below its children's."""

    def __init__(self) -> None:
        self.token: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self._children: dict[tuple[int, int], int] = {}

    def insert(self, tokens: Sequence[int], start: int = -1) -> list[int]:
        """Node ids of the path spelling `tokens` below node `start` (-1: the root), created
        where missing."""
        path, node = [], start
        for tok in tokens:
            key = (node, tok)
            child = self._children.get(key)
            if child is None:
                child = len(self.token)
                self._children[key] = child
                self.token.append(tok)
                self.parent.append(node)
                self.depth.append(0 if node < 0 else self.depth[node] + 1)
            path.append(child)
            node = child
        return path

    def __len__(self) -> int:
        return len(self.token)


def _request_paths(trie: _Trie, requests: Sequence[ScoreRequest]) -> list[list[int]]:
    """Each request's root-to-leaf node path. A context shared by several requests (one per
    answer) is walked once; node ids come out as if every request were inserted whole, in order."""
    context_paths: dict[tuple[int, ...], list[int]] = {}
    paths = []
    for r in requests:
        context = context_paths.get(r.context)
        if context is None:
            context = context_paths[r.context] = trie.insert(r.context)
        paths.append(context + trie.insert(r.target, start=context[-1]))
    return paths


def _pack_rows(
    paths: Sequence[list[int]], order: Sequence[int], max_row_tokens: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Rows of node ids (each sorted and closed under ancestors) and the requests each scores:
    requests in `order` fill a row until the next one's new nodes would overflow it.

    A row holds whole root paths, so the nodes of a path already in it are a prefix of the
    path: its new nodes are counted by a binary search instead of a membership test per node.
    """
    rows: list[list[int]] = []
    members: list[list[int]] = []
    current: set[int] = set()
    current_members: list[int] = []
    for i in order:
        path = paths[i]
        lo, hi = 0, len(path)  # the first node of the path not in the row
        while lo < hi:
            mid = (lo + hi) // 2
            if path[mid] in current:
                lo = mid + 1
            else:
                hi = mid
        if current and len(current) + len(path) - lo > max_row_tokens:
            rows.append(sorted(current))
            members.append(current_members)
            current, current_members, lo = set(), [], 0
        current.update(path[lo:])
        current_members.append(i)
    rows.append(sorted(current))
    members.append(current_members)
    return rows, members


def _tree_mask(parent_col: np.ndarray) -> np.ndarray:
    """(rows, width, width) booleans: a node sees itself and its ancestors, padding only itself.

    `parent_col[b, j]` is the column of node j's parent in row b (-1: none). Ancestors are
    reached by following parents, one level per step for every node of the batch at once.
    """
    n_rows, width = parent_col.shape
    allowed = np.zeros((n_rows, width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True
    row, col = np.nonzero(parent_col >= 0)
    ancestor = parent_col[row, col]
    while row.size:
        allowed[row, col, ancestor] = True
        ancestor = parent_col[row, ancestor]
        deeper = ancestor >= 0
        row, col, ancestor = row[deeper], col[deeper], ancestor[deeper]
    return allowed


@torch.no_grad()
def packed_logprobs(
    model: PreTrainedModel,
    requests: Sequence[ScoreRequest],
    max_batch_tokens: int = 8192,
    max_row_tokens: int = 2048,
    meter: CostMeter | None = None,
) -> list[torch.Tensor]:
    """The same as `reference_logprobs`, encoding every distinct prefix once.

    Memory is bounded by `max_row_tokens` (trie nodes per packed row; a row's attention mask is
    quadratic in it) and `max_batch_tokens` (rows x width per forward pass). A request longer than
    a row gets a row of its own.
    """
    check_lengths(model, requests)
    trie = _Trie()
    paths = _request_paths(trie, requests)
    # Requests in trie (lexicographic) order keep shared prefixes together in the same row.
    order = sorted(range(len(requests)), key=lambda i: requests[i].context + requests[i].target)
    rows, members = _pack_rows(paths, order, max_row_tokens)
    token = np.asarray(trie.token, dtype=np.int64)
    parent = np.asarray(trie.parent, dtype=np.int64)
    depth = np.asarray(trie.depth, dtype=np.int64)
    column = np.full(len(trie), -1, dtype=np.int64)  # a node's column in the row being built

    results: list[torch.Tensor | None] = [None] * len(requests)
    device = _device(model)
    use_keep = _supports_logits_to_keep(model)
    dtype = next(model.parameters()).dtype
    start = 0
    while start < len(rows):
        # as many rows as fit the token budget (at least one)
        width, end = len(rows[start]), start + 1
        while (
            end < len(rows) and max(width, len(rows[end])) * (end + 1 - start) <= max_batch_tokens
        ):
            width = max(width, len(rows[end]))
            end += 1
        n_rows = end - start
        input_ids = np.zeros((n_rows, width), dtype=np.int64)
        positions = np.zeros((n_rows, width), dtype=np.int64)
        parent_col = np.full((n_rows, width), -1, dtype=np.int64)
        wanted_row, wanted_col, scored = [], [], []  # per scored request: its logits' places
        for b in range(n_rows):
            row = np.asarray(rows[start + b], dtype=np.int64)
            column[row] = np.arange(len(row))
            input_ids[b, : len(row)] = token[row]
            positions[b, : len(row)] = depth[row]
            parents = parent[row]
            parent_col[b, : len(row)] = np.where(parents >= 0, column[parents], -1)
            # the logits needed: at the parent of every scored target token
            for i in members[start + b]:
                n_ctx, n_tgt = len(requests[i].context), len(requests[i].target)
                wanted_col.append(column[paths[i][n_ctx - 1 : n_ctx + n_tgt - 1]])
                wanted_row.append(np.full(n_tgt, b, dtype=np.int64))
                scored.append(i)
        rows_at, cols_at = np.concatenate(wanted_row), np.concatenate(wanted_col)
        mask = torch.zeros((n_rows, 1, width, width), dtype=dtype)
        mask.masked_fill_(
            ~torch.from_numpy(_tree_mask(parent_col))[:, None], torch.finfo(dtype).min
        )
        keep = np.zeros((n_rows, width), dtype=bool)
        keep[rows_at, cols_at] = True
        kwargs = {"logits_to_keep": torch.from_numpy(keep).to(device)} if use_keep else {}
        logits = model(
            input_ids=torch.from_numpy(input_ids).to(device),
            attention_mask=mask.to(device),
            position_ids=torch.from_numpy(positions).to(device),
            **kwargs,
        ).logits
        # With `logits_to_keep`, logits come flattened in row-major order of the kept positions.
        logits = logits.reshape(-1, logits.shape[-1])
        if use_keep:  # position of each kept (row, position) in the flattened logits
            flat = np.full((n_rows, width), -1, dtype=np.int64)
            flat[keep] = np.arange(int(keep.sum()))
        else:
            flat = np.arange(n_rows * width, dtype=np.int64).reshape(n_rows, width)
        rows_idx = torch.from_numpy(flat[rows_at, cols_at]).to(logits.device)
        toks = torch.tensor([t for i in scored for t in requests[i].target], device=logits.device)
        picked = torch.log_softmax(logits[rows_idx].float(), dim=-1)
        values = picked.gather(1, toks[:, None])[:, 0].cpu()
        sizes = [len(requests[i].target) for i in scored]
        for i, v in zip(scored, torch.split(values, sizes), strict=True):
            results[i] = v.clone()
        if meter is not None:
            meter.add_forward(sum(len(r) for r in rows[start:end]))
        start = end
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def trie_floor(requests: Sequence[ScoreRequest]) -> int:
    """Forward tokens if every distinct context prefix were encoded once and every answer token
    scored once: the bound the packed engine is measured against."""
    trie = _Trie()
    for r in requests:
        trie.insert(r.context)
    return len(trie) + sum(len(r.target) for r in requests)
