"""Hugging Face `generate`'s samples, token for token, without computing finished rows.

`generate_texts` samples a batch of prompts (each repeated n times) from one random stream:
``torch.manual_seed(seed + b)`` then `generate`. `generate` keeps computing every row until the
longest one ends, so most of a batch's forward passes go to rows that finished long before. This
loop makes the same calls to the model (`generate`'s position ids, 2-D attention mask, key/value
cache and ``logits_to_keep=1``) for the rows still running, and draws each step's tokens with
the same call of the same random stream: `torch.multinomial` on a probability table of the whole
batch's shape, whose finished rows hold a uniform placeholder. `torch.multinomial` draws one
sample per row as ``argmax(p / q)`` with ``q ~ Exp(1)`` drawn for the whole table, so a running
row's token depends on its own probabilities and the stream only, as in `generate`.

It covers what `generate_texts` asks of `generate` (pure temperature sampling or greedy decoding,
EOS as the only stop besides the token limit) for models on the CPU whose generation config adds
nothing to that (`replays_generate`); other models go through `generate` itself. The tests hold
this loop to `generate` token for token.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, PreTrainedModel

from cpmi_lib.lm.rollouts import COMPACT_AT, with_room

#: Fields of a model's generation config that change no sampling step `generate_texts` asks for.
_NEUTRAL_FIELDS = frozenset(
    {
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "decoder_start_token_id",
        "use_cache",
        "output_attentions",
        "output_hidden_states",
        "transformers_version",
        "_from_model_config",
    }
)


def replays_generate(model: PreTrainedModel) -> bool:
    """Whether `sample_like_generate` gives `generate`'s tokens for this model: a decoder-only
    model on the CPU whose generation config differs from the defaults only in token ids and
    output flags (a hub model's own top-k, repetition penalty, etc. would add logits processors).
    On a GPU the kernels chosen for a batch's shape could move last bits, and the tests that hold
    the replay to `generate` run on the CPU, so there `generate` itself runs. Anything else, such
    as a test's scripted stand-in with only a `generate` method, goes to `generate` too."""
    if not isinstance(model, PreTrainedModel) or model.config.is_encoder_decoder:
        return False
    if model.device.type != "cpu":
        return False
    config = getattr(model, "generation_config", None) or GenerationConfig()
    return set(config.to_diff_dict()) <= _NEUTRAL_FIELDS


@torch.no_grad()
def sample_like_generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    pad_id: int,
    eos_id: int | None,
) -> torch.Tensor:
    """The new tokens `model.generate` returns for these left-padded prompts (``out[:,
    width:]``: ``len(prompts) * n`` rows, each prompt's n rows together, pad after a row's EOS)
    with ``do_sample=temperature > 0``, ``top_k=0``, `num_return_sequences` n, drawing from the
    global random stream as `generate` does. Seed it before the call, as for `generate`."""
    mask = attention_mask
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    padded = not bool(mask.all())  # `generate` drops an all-ones mask before the first call
    out = model(
        input_ids=input_ids,
        attention_mask=mask if padded else None,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
    )
    cache = with_room(out.cache, max_new_tokens)
    cache.batch_repeat_interleave(n)  # each prompt encoded once, its cache copied to its n rows
    logits = out.logits[:, -1].float().repeat_interleave(n, dim=0)
    mask = mask.repeat_interleave(n, dim=0)
    position = positions[:, -1].repeat_interleave(n, dim=0)
    batch, device = mask.shape[0], mask.device
    rows = torch.arange(batch, device=device)  # the batch row of each row still computed
    running = torch.ones(batch, dtype=torch.bool, device=device)
    steps: list[torch.Tensor] = []
    placeholder = None
    for t in range(max_new_tokens):
        if temperature == 0:
            picked = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            if placeholder is None:
                placeholder = torch.full((batch, probs.shape[-1]), 1.0 / probs.shape[-1])
                placeholder = placeholder.to(probs)
            table = placeholder.clone()
            table[rows] = probs
            picked = torch.multinomial(table, num_samples=1).squeeze(1)[rows]
        live = running[rows]
        picked = torch.where(live, picked, torch.full_like(picked, pad_id))
        step = torch.full((batch,), pad_id, dtype=picked.dtype, device=device)
        step[rows] = picked
        steps.append(step)
        if eos_id is not None:
            running[rows] = live & (picked != eos_id)
        if t == max_new_tokens - 1 or not bool(running.any()):
            break
        done = ~running[rows]
        if int(done.sum()) * COMPACT_AT >= len(rows):  # drop finished rows: a copy of the cache
            keep = (~done).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, picked, mask, position = rows[keep], picked[keep], mask[keep], position[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        position = position + 1
        out = model(
            input_ids=picked.unsqueeze(-1),
            attention_mask=mask if padded else None,
            position_ids=position.unsqueeze(-1),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = out.cache, out.logits[:, -1].float()
    return torch.stack(steps, dim=1)
