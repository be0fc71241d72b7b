"""Language models: loading (hub ids, local dirs, GGUF), the embedded world LMs and their training,
teacher-forced log-probabilities, sampling, LM quality.

May import: cpmi_lib.core, cpmi_lib.data.
"""
