"""cpmi-suite: Contrastive Pointwise Mutual Information step labels, process reward models and the
experiments that compare them with Monte Carlo estimation."""

__version__ = "0.1.0"
