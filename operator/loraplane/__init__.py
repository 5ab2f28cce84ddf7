"""LoRAPlane core: API types, storage layout, routing table, the operator and the CLI."""

__version__ = "0.1.0"

GROUP = "loraplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
