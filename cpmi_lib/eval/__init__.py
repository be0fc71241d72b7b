"""How a PRM is judged: ProcessBench-style first-error F1 and Best-of-N selection.

May import: cpmi_lib.core, cpmi_lib.data, cpmi_lib.lm, cpmi_lib.labeling, cpmi_lib.prm.
"""
