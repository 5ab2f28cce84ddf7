"""Evaluation people can run: blind rating sessions, agreement statistics, an LLM judge and the safety probes.

Pure code with no torch and no server: the CLI, the rating server and the
trainer all use it.
"""
