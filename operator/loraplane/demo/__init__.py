"""`loraplane demo`: the whole loop on one machine, from a dataset to a canaried chatbot.

It runs the same programs a cluster runs as pods — the dataset check, the
trainer, vLLM, adapter sync, the router — as local processes, on the example
YAML, and drives the canary with the operator's own rollout logic.
"""

from .runner import DemoError, DemoOptions, run_demo

__all__ = ["DemoError", "DemoOptions", "run_demo"]
