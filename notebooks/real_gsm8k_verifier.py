# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Real text, real LM: CPMI as a zero-shot verifier of GSM8K solutions
# GSM8K's test questions with four GPT-3 solutions each (`is_correct` from the data set). Every
# solution's steps are scored with CPMI from SmolLM2-135M-Instruct through its chat template; no
# PRM is trained. CPMI knows the gold answer (as when it labels training data), so this asks
# whether its labels track correctness on real text; the oracle, which also knows the gold, bounds
# it. The Best-of-4 aggregate (`selection`) is fixed in advance, not chosen on these problems.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
problems = 150
variant = "cumulative"
templates = 1
n_negatives = 1
selection = "min"
gsm8k_dir = None  # None: ../shared/data/gsm8k beside the checkout (or $CPMI_GSM8K_DIR)

# %%
import time

from cpmi_lib.report.headline import record_headline
from cpmi_lib.report.plots import save_figure, verifier_figure
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies import real_verifier as rv

cfg = rv.VerifierConfig(problems, variant, templates, n_negatives, selection)
start = time.perf_counter()
scores = rv.score_solutions(cfg, gsm8k=gsm8k_dir)
print(
    f"{len(scores.frame)} solutions of {scores.frame['problem'].nunique()} problems scored "
    f"({scores.costs.wall_seconds:.0f} s of CPMI); dropped {len(scores.dropped)}"
)
for why in scores.dropped:
    print("  dropped:", why)

# %%
aurocs = rv.auroc_table(scores.frame, cfg.seed)
bo4, tests = rv.best_of_4(scores.frame, cfg)
setup = rv.setup_table(cfg, scores, time.perf_counter() - start)
save_table(aurocs, "real_gsm8k_auroc", results_dir)
save_table(bo4, "real_gsm8k_bo4", results_dir)
save_table(tests, "real_gsm8k_mcnemar", results_dir)
save_table(setup, "real_gsm8k_setup", results_dir)
save_figure(verifier_figure(scores.frame, aurocs, bo4), "real_gsm8k_verifier", figures_dir)
record_headline(results_dir, rv.headline_entries(aurocs, bo4, cfg))
display(setup, aurocs, bo4, tests)  # noqa: F821
