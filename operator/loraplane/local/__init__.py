"""Run the serving stack on one machine: vLLM, adapter sync and the router as processes (no cluster)."""
