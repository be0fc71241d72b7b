"""One experiment as cached stages: its typed config, the tracks (embedded, hub), the presets, and
the `Experiment` whose methods are the stages.

May import: every package above except cpmi_lib.report and cpmi_lib.studies.
"""
