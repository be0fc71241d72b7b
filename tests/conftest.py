"""Test-wide settings: the suite never reaches a model or data hub from its tests."""

import os

# Set before transformers/datasets/huggingface_hub are imported: they read these at import time.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
