"""The settings of an experiment as each model reads them: with `HubSpec.chat` every template (the
policy's prompt, CPMI's, MC's, the PRM's) is rendered through its own model's chat template when
that model loads; otherwise it is used as written. The raw instructions stay in the cache keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from transformers import AutoTokenizer

from cpmi_lib.core.text_format import (
    CHAT_INSTRUCTIONS,
    DEFAULT_TEMPLATE,
    PROMPT_TEMPLATES,
    chat_prompt_template,
)
from cpmi_lib.experiment.config import ExperimentConfig
from cpmi_lib.experiment.tracks import Track
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.prm.config import PRMConfig


class ReadPrompts:
    """The prompt-bearing settings of `cfg`, rendered for the models of `track` (`Experiment`'s
    base: its stages sample, label and train with them)."""

    cfg: ExperimentConfig
    track: Track

    def _as_read(self, template: str, tokenizer: Callable[[], Any]) -> str:
        """`template` as its model reads it: itself, or with `HubSpec.chat` the instruction
        rendered through the model's chat template (`tokenizer` is called only then)."""
        if self.cfg.hub is None or not self.cfg.hub.chat:
            return template
        return chat_prompt_template(tokenizer(), template)

    @property
    def prompt_templates(self) -> tuple[str, ...]:
        """What K templates are drawn from: chat instructions (`HubSpec.chat`) or plain ones."""
        return CHAT_INSTRUCTIONS if self.cfg.hub and self.cfg.hub.chat else PROMPT_TEMPLATES

    def sample_template(self) -> str:
        """The prompt the policy samples from (`HubSpec.prompt`, else the default template)."""
        prompt = (self.cfg.hub and self.cfg.hub.prompt) or DEFAULT_TEMPLATE
        return self._as_read(prompt, lambda: self.track.lm()[1])

    def cpmi_config(self, cpmi: CPMIConfig | None = None) -> CPMIConfig:
        """CPMI's settings (default: the experiment's) with the templates the labeler reads."""
        cpmi = cpmi or self.cfg.cpmi
        read = lambda: self.track.labeler_lm()[1]  # noqa: E731
        return replace(cpmi, templates=tuple(self._as_read(t, read) for t in cpmi.templates))

    def mc_config(self) -> MCConfig:
        """MC's settings with the prompt template the labeler's rollouts start from."""
        mc = self.cfg.mc
        return replace(mc, template=self._as_read(mc.template, lambda: self.track.labeler_lm()[1]))

    def prm_config(self) -> PRMConfig:
        """The PRMs' settings with the prompt template their backbone reads."""
        prm = self.cfg.prm
        backbone = lambda: AutoTokenizer.from_pretrained(self.track.prm_backbone)  # noqa: E731
        return replace(prm, template=self._as_read(prm.template, backbone))
