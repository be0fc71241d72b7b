"""Many sampled continuations of a few prompts, fast and with one random stream per row.

MC labels a step by sampling N completions of each of a trajectory's S prefixes. `generate` does
that as S·N independent rows: every row re-encodes its prompt, finished rows keep being computed
until the longest row ends, and all rows share one random stream, so a row's sample depends on
what else is in its batch. This engine instead

1. encodes each prompt once (one row per prompt) and copies its key/value cache to its n rows;
2. draws row (p, j)'s tokens from its own stream: ``torch.rand`` of a generator seeded with
   ``seeds[p]`` gives prompt p an (n, max_new_tokens) table of uniforms, and token t of row j is
   the inverse-CDF sample of uniform [j, t] under the temperature-scaled softmax;
3. drops finished rows (EOS) from the batch as it goes, and writes each step's keys and values
   into room made for them (`torch.cat` would copy the whole cache every step).

So a row's text depends only on its prompt, its seed and the model: not on the other prompts in
the call, the batch size or how the work is sharded (up to the last bits of float arithmetic,
which batch shape can move; on one machine a given call is bitwise repeatable).
`reference_continuations` is the slow, obvious version (no cache, one row at a time, full
re-encoding each token) that the tests hold this engine to.

Temperature 0 is greedy decoding (argmax; the uniforms are unused). Sampling is pure temperature
sampling (no top-k/top-p), as `generate_texts` asks of `generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from cpmi_lib.core.costs import CostMeter

#: Finished rows leave the batch once they are at least 1 in COMPACT_AT of it: until then they
#: are computed for nothing, and dropping them copies the cache (measured best of 2, 4, 8 on the
#: default world; a finished row's results are never read, so this only moves time).
COMPACT_AT = 4


@dataclass(frozen=True)
class Continuations:
    """The sampled texts of each prompt, and what each prompt cost in tokens."""

    texts: list[list[str]]  # texts[p][j]: row j of prompt p, special tokens left out
    prompt_tokens: list[int]  # tokens of prompt p, encoded once
    new_tokens: list[int]  # tokens generated for prompt p, each row up to and including its EOS


def row_uniforms(seed: int, n: int, max_new_tokens: int) -> torch.Tensor:
    """The (n, max_new_tokens) float64 uniforms of one prompt's n rows (its random stream)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, max_new_tokens), generator=gen, dtype=torch.float64)


def pick_tokens(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """One token per row: argmax when `temperature` is 0, else the inverse-CDF sample of each
    row's uniform under ``softmax(logits / temperature)`` (float64 CDF; a uniform past the CDF's
    rounded end takes the last token with probability above 0)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1).double()
    cdf = probs.cumsum(dim=-1)
    picked = (cdf < uniforms.unsqueeze(-1)).sum(dim=-1)
    last_possible = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(dim=-1)
    return torch.minimum(picked, last_possible)


class _RoomyLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values live in buffers with room for `room` more tokens:
    a decode step writes in place, where `DynamicLayer` copies the whole cache (``torch.cat``),
    which costs as much as attention itself at a few hundred rows."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
        super().__init__()
        b, h, n, d = keys.shape
        self._k = keys.new_empty((b, h, n + room, d))
        self._v = values.new_empty((b, h, n + room, values.shape[-1]))
        self._k[:, :, :n], self._v[:, :, :n] = keys, values
        self.length, self.device, self.is_initialized = n, keys.device, True
        self._view()

    def _view(self) -> None:
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def update(self, key_states, value_states, *args, **kwargs):  # type: ignore[override]
        end = self.length + key_states.shape[-2]
        if end > self._k.shape[-2]:
            raise RuntimeError(f"cache room for {self._k.shape[-2]} tokens, {end} asked")
        self._k[:, :, self.length : end], self._v[:, :, self.length : end] = (
            key_states,
            value_states,
        )
        self.length = end
        self._view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k, self._v = (
            self._k.repeat_interleave(repeats, 0),
            self._v.repeat_interleave(repeats, 0),
        )
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._view()


def with_room(cache: DynamicCache, room: int) -> DynamicCache:
    """`cache` with every plain `DynamicLayer` made roomy (other layer kinds stay as they are)."""
    cache.layers = [
        _RoomyLayer(layer.keys, layer.values, room) if type(layer) is DynamicLayer else layer
        for layer in cache.layers
    ]
    return cache


def left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the left to one width, and their attention mask: every prompt ends
    where generation starts."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id
    pad = tokenizer.eos_token_id if pad is None else pad
    return 0 if pad is None else int(pad)


@torch.no_grad()
def sample_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n: int,
    *,
    seeds: Sequence[int],
    temperature: float,
    max_new_tokens: int,
    meter: CostMeter | None = None,
) -> Continuations:
    """`n` continuations of each prompt, row (p, j) drawn from
    ``row_uniforms(seeds[p], n, max_new_tokens)[j]``; see the module docstring.

    The meter counts what is computed: each prompt's tokens once, and every generated token up to
    and including its row's EOS.
    """
    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n and max_new_tokens must be >= 1, got {n} and {max_new_tokens}")
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not prompts:
        return Continuations([], [], [])
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p).input_ids for p in prompts]
    ids, mask = left_padded(encoded, _pad_id(tokenizer))
    ids, mask = ids.to(device), mask.to(device)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = with_room(out.cache, max_new_tokens)
    cache.batch_repeat_interleave(n)
    logits = out.logits[:, -1, :].repeat_interleave(n, dim=0)
    mask = mask.repeat_interleave(n, dim=0)
    uniforms = torch.cat([row_uniforms(s, n, max_new_tokens) for s in seeds]).to(device)
    rows = torch.arange(len(prompts) * n, device=device)  # original row of each live row
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(len(prompts) * n)]
    for t in range(max_new_tokens):
        tokens = pick_tokens(logits, uniforms[rows, t], temperature)
        for r, tok, done in zip(rows.tolist(), tokens.tolist(), finished.tolist(), strict=True):
            if not done:
                generated[r].append(tok)
        if eos is not None:
            finished |= tokens == eos
        if t == max_new_tokens - 1 or bool(finished.all()):
            break
        if int(finished.sum()) * COMPACT_AT >= len(rows):  # drop finished rows (a copy of the
            keep = (~finished).nonzero().squeeze(-1)  # cache: worth it once they are many)
            cache.batch_select_indices(keep)
            rows, tokens, mask, finished = rows[keep], tokens[keep], mask[keep], finished[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(
            input_ids=tokens.unsqueeze(-1),
            attention_mask=mask,
            position_ids=(mask.sum(-1, keepdim=True) - 1),
            cache=cache,
            use_cache=True,
        )
        cache = out.cache
        logits = out.logits[:, -1, :]
    if meter is not None:
        meter.add_generate(sum(map(len, encoded)), sum(map(len, generated)))
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    return Continuations(
        texts=[texts[p * n : (p + 1) * n] for p in range(len(prompts))],
        prompt_tokens=[len(ids) for ids in encoded],
        new_tokens=[sum(map(len, generated[p * n : (p + 1) * n])) for p in range(len(prompts))],
    )


@torch.no_grad()
def reference_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n: int,
    *,
    seeds: Sequence[int],
    temperature: float,
    max_new_tokens: int,
) -> list[list[str]]:
    """What `sample_continuations` computes, the slow and obvious way: each row alone, the whole
    sequence re-encoded for every token, no cache, no padding. For tests."""
    device = next(model.parameters()).device
    out = []
    for prompt, seed in zip(prompts, seeds, strict=True):
        uniforms = row_uniforms(seed, n, max_new_tokens).to(device)
        texts = []
        for j in range(n):
            seq = list(tokenizer(prompt).input_ids)
            new: list[int] = []
            for t in range(max_new_tokens):
                logits = model(input_ids=torch.tensor([seq], device=device)).logits[:, -1, :]
                tok = int(pick_tokens(logits, uniforms[j, t : t + 1], temperature)[0])
                new.append(tok)
                seq.append(tok)
                if tok == tokenizer.eos_token_id:
                    break
            texts.append(tokenizer.decode(new, skip_special_tokens=True))
        out.append(texts)
    return out
