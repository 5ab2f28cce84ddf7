"""LoRAPlane serving data plane: the A/B router and the adapter-sync sidecar."""
