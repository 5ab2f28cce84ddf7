"""Benchmark: the full dataset check pass, embeddings included, on a generated 100k-example set.

Prints examples/s and peak RSS of the check pass, next to a baseline measured in the same
run on the same file: reading and JSON-parsing every line and nothing else. Each runs in
its own process so its peak RSS is its own (the embedding table is distilled beforehand, as
`make install` and the image build do). Half the set is made of unrelated examples over a
random vocabulary; the other half is what makes the meaning checks work: paraphrase groups
with prompt variations, templated questions differing in an identifier, copies.
Target: 100k examples in under 120 s, under 3 GB, on 2 cores.

    python bench/dataset_checks.py [--examples 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = """
import json, resource, sys, time
t = time.perf_counter(); n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        try:
            json.loads(line); n += 1
        except ValueError:
            pass
print(json.dumps({"seconds": time.perf_counter() - t, "examples": n,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHECKS = """
import json, resource, sys, time
from loraplane.api.finetunejob import DatasetChecks
from loraplane_trainer.dataset import check, open_uri
t = time.perf_counter()
report = check(open_uri(sys.argv[1]), DatasetChecks(), max_tokens=1024)
print(json.dumps({"seconds": time.perf_counter() - t, "examples": report.examples,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "findings": {f.check: f.count for f in report.findings}}))
"""


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Half distinct examples over 60 intents, half support-like examples; 2% exact and 1% near duplicates
    and a few bad lines."""
    sys.path.insert(0, str(ROOT / "examples" / "data"))
    from generate_support import INTENTS

    intents = list(INTENTS.values())
    frames = ["{p}", "Hi, {p}", "Quick question: {p}", "{p} Thanks!", "Hello team, {p}", "{p} Cheers."]
    features = ["5G", "NFC", "Wi-Fi 7", "dual SIM", "eSIM", "USB-C", "wireless charging"]
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ra", "to", "vi", "pe", "do", "ba", "gu", "fi", "ze", "ho"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(5000)]
    vocab += ["the", "a", "to", "how", "do", "i", "my", "is", "can", "you", "what", "where", "plan", "file"]
    made: list[dict] = []
    with open(path, "w") as f:
        for _ in range(n):
            r = rng.random()
            if made and r < 0.02:
                record = rng.choice(made)
            elif made and r < 0.03:
                src = rng.choice(made)
                record = {**src, "prompt": "Hi, " + src["prompt"].lower()}
            elif r < 0.0305:
                f.write('{"prompt": "broken\n')
                continue
            elif r < 0.35:
                _tag, answer, prompts = rng.choice(intents)
                p = rng.choice(prompts)
                record = {"prompt": rng.choice(frames).format(p=p[0].lower() + p[1:] if rng.random() < 0.5 else p),
                          "completion": answer}
            elif r < 0.5:
                code, feature = f"{rng.choice('KXZ')}{rng.randrange(1, 20000)}", rng.choice(features)
                yes = zlib.crc32(f"{code}{feature}".encode()) % 2 == 0
                record = {"prompt": f"Does model {code} support {feature}?",
                          "completion": f"Yes, model {code} supports {feature}." if yes else
                          f"No, model {code} has no {feature}."}
            else:
                record = {
                    "prompt": " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 18))) + "?",
                    "completion": " ".join(rng.choice(vocab) for _ in range(rng.randint(12, 40))).capitalize() + ".",
                    "intent": f"intent-{int(rng.paretovariate(1.2)) % 60}",
                }
                if len(made) < 5000:
                    made.append(record)
            f.write(json.dumps(record) + "\n")


def measure(script: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        generate(path, args.examples)
        subprocess.run([sys.executable, "-m", "loraplane_trainer.dataset.meaning.embeddings"], check=True,
                       capture_output=True)
        size_mb = path.stat().st_size / 1e6
        base = measure(BASELINE, path)
        full = measure(CHECKS, path)
    print(f"dataset: {args.examples} lines, {size_mb:.1f} MB")
    for name, r in (("baseline (read + JSON parse)", base), ("full check pass", full)):
        print(f"{name:30s} {r['examples'] / r['seconds']:10,.0f} examples/s  {r['seconds']:6.1f} s  "
              f"peak RSS {r['rss_mb']:7.0f} MB")
    print(f"check pass / baseline time: {full['seconds'] / base['seconds']:.1f}x")
    print(f"findings: {full['findings']}")
    ok = full["seconds"] < 120 and full["rss_mb"] < 3072
    print(f"target (< 120 s, < 3072 MB): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
