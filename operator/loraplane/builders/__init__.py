"""Pure functions that turn a custom resource into the Kubernetes objects it owns.

Builders take plain data (the object as a dict or its pydantic model, the operator
config) and return manifests as dicts; they never talk to the API server, so they are
unit-tested as tables. `common` holds what every builder shares: names, labels,
ownerReferences.
"""
