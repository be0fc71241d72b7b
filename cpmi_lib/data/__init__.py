"""Where problems and solutions come from: the embedded arithmetic world, its tokenizer, and the
loaders of hub-schema files (GSM8K, Math-Shepherd, ProcessBench).

May import: cpmi_lib.core.
"""
