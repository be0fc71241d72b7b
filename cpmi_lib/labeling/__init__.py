"""Step labels: CPMI, the Monte Carlo baseline, hard negatives, position labels, and labeling a
file of trajectories (run identity, locks, resume, merge).

May import: cpmi_lib.core, cpmi_lib.data, cpmi_lib.lm.
"""
