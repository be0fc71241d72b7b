"""What the suite shows: the declared claims, headline numbers, tables, figures and the rendered
results README.

May import: cpmi_lib.core, cpmi_lib.eval and cpmi_lib.experiment (types only); never
cpmi_lib.studies.
"""
