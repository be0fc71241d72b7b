"""Plain data and arithmetic every layer shares: trajectories and their records, answers, prompt
text, costs, statistics, paths, and the one atomic way to write a file.

May import: nothing of cpmi_lib.
"""
