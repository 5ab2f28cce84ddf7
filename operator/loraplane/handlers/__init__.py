"""The kopf handlers of the LoRAPlane operator: importing this package registers them.

`kopf run -m loraplane.handlers` (what `loraplane-operator` and the test harness
run) loads:

- `operator`: login (in-cluster, kubeconfig, or LORAPLANE_API_SERVER), settings, metrics endpoint;
- `finetunejob`: the FineTuneJob controller;
- `chatbotdeployment`: the ChatbotDeployment controller;
- `modelpool`: the ModelPool controller (pools shared by many ChatbotDeployments).

Handlers stay thin: they read the object, call pure functions in
`loraplane.builders` / `loraplane.status`, and write children and status.
A controller module is loaded when it exists, so each controller lands on its own.
"""

from __future__ import annotations

import importlib
import importlib.util

from . import operator  # noqa: F401  (registers login/startup handlers)

CONTROLLERS = ("finetunejob", "chatbotdeployment", "modelpool")

for _name in CONTROLLERS:
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")
