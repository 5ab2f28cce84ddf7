"""Adapter sync: the sidecar that keeps a vLLM replica's LoRA adapters equal to the routing table's."""
