"""The `surprise` PRM head: a small network over what a frozen causal LM sees in each step.

Why: a scalar head read at the step's last token, fine-tuned with the backbone, did not learn to
find errors on the embedded world even from exact truth (F1 0.19-0.26 from 1,200 to 12,000
trajectories, `cpmi_lib.studies.truth_prm`), while the same LM's untrained surprise at the step's
own tokens found them (F1 0.97). A causal LM's hidden state at the end of a step is built to
predict the *next* token, not to judge the tokens it has read; how surprising each token was is
exactly what judging needs, and it is cheap to compute: one teacher-forced pass.

Per step the backbone gives (token log-probabilities are those of the step's own tokens, its
separator included, each given everything before it):

- the minimum and the mean token log-probability,
- the minimum and the mean margin (log-probability minus the most likely token's), and
- the backbone's last hidden state at the step's last token (what the value head used to read).

`StepHead` standardizes them with statistics of the training steps (stored with the weights) and
maps them through a small MLP to one logit. The backbone stays frozen, so what the PRM learns is
the mapping from features to step quality, and it learns it from whatever labels it is given: a
label source that knows nothing gives a head that knows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

#: Surprise features per step, before the hidden state.
SURPRISE_FEATURES = ("min_logprob", "mean_logprob", "min_margin", "mean_margin")


@dataclass(frozen=True)
class StepSpans:
    """Token ids of one encoded trajectory and, per kept step, its first and last token."""

    input_ids: list[int]
    starts: list[int]
    ends: list[int]


@torch.no_grad()
def step_features(
    model: PreTrainedModel, spans: Sequence[StepSpans], batch_size: int = 32
) -> list[torch.Tensor]:
    """Per trajectory, a float32 tensor [kept steps, 4 + hidden size] of step features.

    One teacher-forced pass per batch (right-padded: causal attention keeps padded positions out
    of every real token's view, so features do not depend on the batch).
    """
    model.eval()
    device = next(model.parameters()).device
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out: list[torch.Tensor] = []
    for start in range(0, len(spans), batch_size):
        chunk = spans[start : start + batch_size]
        width = max(len(s.input_ids) for s in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, s in enumerate(chunk):
            ids[row, : len(s.input_ids)] = torch.tensor(s.input_ids)
            attention[row, : len(s.input_ids)] = 1
        ids, attention = ids.to(device), attention.to(device)
        result = model(input_ids=ids, attention_mask=attention, output_hidden_states=True)
        # log p(token t | < t) and its margin to the likeliest token, [b, t-1], without a
        # vocabulary-wide log-softmax tensor (the largest allocation with a real vocabulary)
        logits = result.logits[:, :-1].float()
        token_logit = logits.gather(2, ids[:, 1:, None])[..., 0]
        token_logp = token_logit - torch.logsumexp(logits, dim=-1)
        margin = token_logit - logits.max(dim=-1).values
        hidden = result.hidden_states[-1].float()
        for row, s in enumerate(chunk):
            rows = []
            for first, last in zip(s.starts, s.ends, strict=True):
                lp = token_logp[row, first - 1 : last]  # tokens first..last, shifted by one
                mg = margin[row, first - 1 : last]
                surprise = torch.stack([lp.min(), lp.mean(), mg.min(), mg.mean()])
                rows.append(torch.cat([surprise, hidden[row, last]]))
            out.append(torch.stack(rows).cpu())
    return out


class StepHead(nn.Module):
    """Standardize step features (train statistics, stored as buffers), then an MLP to a logit.

    `forward` takes ``features`` [batch, steps, dim] (padded steps are ignored through the
    labels) and returns an object with ``.logits`` [batch, steps, 1], as the Trainer expects.
    """

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1)
            )
        else:
            self.net = nn.Linear(dim, 1)

    def fit_scaler(self, features: Sequence[torch.Tensor]) -> None:
        """Standardization statistics from the training steps only."""
        flat = torch.cat(list(features))
        self.mean.copy_(flat.mean(0))
        std = flat.std(0)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))  # constant: as is

    def forward(self, features: torch.Tensor, **_: object) -> HeadOutput:
        return HeadOutput(self.net((features - self.mean) / self.std))


@dataclass
class HeadOutput(ModelOutput):
    """A `ModelOutput` (dict-like), as `Trainer.prediction_step` expects."""

    logits: torch.Tensor | None = None


@dataclass
class FeatureCollator:
    """Pads a batch of per-step feature rows to the longest trajectory; labels padded with -100."""

    ignore_index: float = -100.0

    def __call__(
        self, rows: list[dict[str, torch.Tensor | list[float]]]
    ) -> dict[str, torch.Tensor]:
        width = max(len(r["features"]) for r in rows)
        dim = rows[0]["features"].shape[1]  # type: ignore[union-attr]
        feats = torch.zeros((len(rows), width, dim))
        labels = torch.full((len(rows), width), self.ignore_index)
        for i, r in enumerate(rows):
            f = r["features"]
            feats[i, : len(f)] = f  # type: ignore[assignment]
            if "labels" in r:
                labels[i, : len(f)] = torch.tensor(r["labels"], dtype=torch.float32)
        batch = {"features": feats}
        if "labels" in rows[0]:
            batch["labels"] = labels
        return batch
