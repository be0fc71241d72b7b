"""Analyses: functions that take an `Experiment` and return tables and headline numbers (the
instrument, the labeler axis, real text).

May import: every other package.
"""
