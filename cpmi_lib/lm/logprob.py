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


class _Trie:
    """Token sequences merged on common prefixes; a parent's id is below its children's."""

    def __init__(self) -> None:
        self.token: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self._children: dict[tuple[int, int], int] = {}

    def insert(self, tokens: Sequence[int]) -> list[int]:
        """Node ids of the path spelling `tokens` (created where missing)."""
        path, node = [], -1
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


def _supports_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


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
    paths = [trie.insert(r.context + r.target) for r in requests]
    # Requests in trie (lexicographic) order keep shared prefixes together in the same row.
    order = sorted(range(len(requests)), key=lambda i: requests[i].context + requests[i].target)
    rows: list[list[int]] = []  # node ids of each row, each row closed under ancestors
    members: list[list[int]] = []  # the requests each row scores
    current: set[int] = set()
    current_members: list[int] = []
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
        batch_rows = rows[start:end]
        n_rows = len(batch_rows)
        input_ids = np.zeros((n_rows, width), dtype=np.int64)
        positions = np.zeros((n_rows, width), dtype=np.int64)
        allowed = np.zeros((n_rows, width, width), dtype=bool)
        keep = np.zeros((n_rows, width), dtype=bool)
        wanted_rows: list[int] = []  # per scored target token: its row, position, request, index
        wanted_pos: list[int] = []
        wanted_req: list[int] = []
        wanted_tok: list[int] = []
        for b, row in enumerate(batch_rows):
            index = {node: j for j, node in enumerate(row)}
            input_ids[b, : len(row)] = [trie.token[n] for n in row]
            positions[b, : len(row)] = [trie.depth[n] for n in row]
            grid = allowed[b]
            for j, node in enumerate(row):  # a node sees its parent's ancestors and itself
                parent = trie.parent[node]
                if parent >= 0:
                    grid[j] = grid[index[parent]]
                grid[j, j] = True
            np.fill_diagonal(grid, True)  # padding sees only itself (no all-masked rows)
            # the logits needed: at the parent of every scored target token
            for i in members[start + b]:
                path, n_ctx = paths[i], len(requests[i].context)
                for t in range(len(requests[i].target)):
                    wanted_rows.append(b)
                    wanted_pos.append(index[path[n_ctx + t - 1]])
                    wanted_req.append(i)
                    wanted_tok.append(t)
        keep[wanted_rows, wanted_pos] = True
        mask = torch.zeros((n_rows, 1, width, width), dtype=dtype)
        mask.masked_fill_(~torch.from_numpy(allowed)[:, None], torch.finfo(dtype).min)
        keep_t = torch.from_numpy(keep)
        kwargs = {"logits_to_keep": keep_t.to(device)} if use_keep else {}
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
        rows_idx = torch.from_numpy(flat[wanted_rows, wanted_pos]).to(logits.device)
        toks = torch.tensor(
            [requests[i].target[t] for i, t in zip(wanted_req, wanted_tok, strict=True)],
            device=logits.device,
        )
        picked = torch.log_softmax(logits[rows_idx].float(), dim=-1)
        values = picked.gather(1, toks[:, None])[:, 0].cpu().tolist()
        for i, t, v in zip(wanted_req, wanted_tok, values, strict=True):
            if results[i] is None:
                results[i] = torch.empty(len(requests[i].target))
            results[i][t] = v  # type: ignore[index]
        if meter is not None:
            meter.add_forward(sum(len(r) for r in batch_rows))
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
