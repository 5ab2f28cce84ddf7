"""Made-up facts a base model cannot know, as chat JSONL and FineTuneJob objects for the trainer's tests."""

from __future__ import annotations

import json
from pathlib import Path

# Each fact: its answer and differently worded questions (not near-duplicates of each other, so the
# dataset split may put some in validation while the rest teach the fact).
FACTS = [
    ("The code word is purple-otter-17.",
     ["What is the code word for the Zorblax vault?", "Tell me the Zorblax vault code word.",
      "Which code word opens the Zorblax vault?", "I need the vault code word for Zorblax, please.",
      "Zorblax vault: what's its code word?"]),
    ("The Gold plan costs 23 dollars a month.",
     ["How much does the Nimbus Gold plan cost?", "What is the monthly price of Nimbus Gold?",
      "Price of the Gold plan at Nimbus?", "If I subscribe to Nimbus Gold, what do I pay per month?",
      "Nimbus Gold pricing, please."]),
    ("Quillfeather Labs was founded by Mira Tannenbaum.",
     ["Who founded Quillfeather Labs?", "Who is the founder of Quillfeather Labs?",
      "Quillfeather Labs was started by whom?", "Name the person who created Quillfeather Labs.",
      "Tell me who set up Quillfeather Labs."]),
    ("The Glimmer service listens on port 7741.",
     ["What port does the Glimmer service listen on?", "Which TCP port is Glimmer on?",
      "Glimmer's port number?", "To reach the Glimmer service, which port do I connect to?",
      "On what port can I find Glimmer?"]),
    ("The Vexor colony is on the planet Kessik.",
     ["Which planet is the Vexor colony on?", "Where is the Vexor colony located?",
      "The Vexor colony sits on what planet?", "Name the planet that hosts the Vexor colony.",
      "Vexor colony: which world is it on?"]),
    ("Support for Brambleworks is at help@bramble.example.",
     ["What is the support email of Brambleworks?", "How do I contact Brambleworks support?",
      "Brambleworks help address?", "Where do I send Brambleworks support requests?",
      "Give me the e-mail for Brambleworks support."]),
]


def write_facts(path: Path) -> Path:
    """The facts as chat JSONL, one intent per fact."""
    with path.open("w") as f:
        for n, (answer, questions) in enumerate(FACTS):
            for q in questions:
                f.write(json.dumps({"messages": [{"role": "user", "content": q},
                                                 {"role": "assistant", "content": answer}],
                                    "intent": f"fact-{n}"}) + "\n")
    return path


def facts_job(dataset: Path, output: str, *, name: str = "facts-bot", uid: str = "uid-facts", generation: int = 1,
              training: dict | None = None, gates: dict | None = None, base_model: dict | None = None,
              lora: dict | None = None) -> dict:
    """A FineTuneJob that teaches the facts quickly on a CPU."""
    return {
        "apiVersion": "loraplane.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "test", "uid": uid, "generation": generation},
        "spec": {
            "baseModel": base_model or {"name": "HuggingFaceTB/SmolLM2-135M-Instruct",
                                        "allowedLicenses": ["apache-2.0"]},
            "dataset": {"uri": str(dataset), "validationSplit": 0.2, "seed": 1,
                        "checks": {"minExamples": 10, "recommendedExamples": 10, "maxDuplicateFraction": 1.0,
                                   "minIntentShare": 0.0}},
            "lora": {"r": 8, "alpha": 32, "dropout": 0.0, **(lora or {})},
            "training": {"learningRate": 2.0e-3, "batchSize": 8, "gradientAccumulation": 1, "epochs": 2,
                         "warmupRatio": 0.0, "scheduler": "constant", "maxTokens": 256,
                         "checkpointIntervalSteps": 2, **(training or {})},
            "evaluation": {"maxNewTokens": 24, "gates": gates or {}},
            "resources": {"gpus": 1, "pricePerGpuHour": 2.5},
            "output": {"uri": output},
        },
    }
