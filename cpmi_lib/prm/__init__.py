"""Process reward models: config, model heads, input encoding, step features, training targets,
training and loading.

May import: cpmi_lib.core, cpmi_lib.data, cpmi_lib.lm, cpmi_lib.labeling.
"""
