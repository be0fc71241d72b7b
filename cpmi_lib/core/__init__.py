"""Plain data and arithmetic every layer shares: trajectories and their records, answers, prompt
text, costs, statistics, paths.

May import: nothing of cpmi_lib.
"""
