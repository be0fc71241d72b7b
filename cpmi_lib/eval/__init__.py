"""How a PRM is judged: ProcessBench-style first-error F1 and Best-of-N selection.

`evaluate_prm` (τ chosen on dev, F1 on test) is the one evaluation entry that the experiment, the
CLI and the studies share.

May import: cpmi_lib.core, cpmi_lib.data, cpmi_lib.lm, cpmi_lib.labeling, cpmi_lib.prm.
"""

from cpmi_lib.eval.evaluate import PRMEvaluation, evaluate_prm

__all__ = ["PRMEvaluation", "evaluate_prm"]
