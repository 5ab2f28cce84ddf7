"""Trainer pieces that need no model: precision, LoRA targets, licenses, gates, exact-match normalisation, job files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loraplane.api.finetunejob import BaseModelSpec, QualityGates
from loraplane.exitcodes import BAD_INPUT
from loraplane_trainer.training.cli import load_job
from loraplane_trainer.training.errors import BadInput, LicenseRefused, QuantizationUnsupported
from loraplane_trainer.training.evaluation import check_gates, generation_batches, normalize
from loraplane_trainer.training.lora import add_adapter, target_modules
from loraplane_trainer.training.model_source import ResolvedModel, check_license, read_license, resolve
from loraplane_trainer.training.precision import check_quantization, choose


def test_precision_auto_follows_the_cpu_flags():
    assert choose("auto", device="cpu", flags={"avx2", "avx512_bf16"}).name == "bf16"
    assert choose("auto", device="cpu", flags={"amx_bf16"}).name == "bf16"
    assert choose("auto", device="cpu", flags={"avx2"}).name == "fp32"
    assert choose("fp32", device="cpu", flags={"amx_bf16"}).name == "fp32"
    assert choose("fp16", device="cpu", flags=set()).name == "bf16"  # fp16 is not a CPU format worth using


def test_qlora_on_cpu_is_refused_with_a_clear_message():
    with pytest.raises(QuantizationUnsupported, match="4bit .*needs a CUDA GPU") as err:
        check_quantization("4bit", "cpu")
    assert err.value.exit_code == BAD_INPUT and err.value.reason == "QuantizationUnsupported"
    check_quantization("4bit", "cuda")
    check_quantization("none", "cpu")


def test_all_linear_resolves_per_architecture():
    assert target_modules(["all-linear"], "llama") == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                       "up_proj", "down_proj"]
    assert target_modules(["all-linear"], "gpt2") == ["c_attn", "c_proj", "c_fc"]
    assert target_modules(["all-linear"], "some-new-arch") == "all-linear"
    assert target_modules(["q_proj", "v_proj"], "llama") == ["q_proj", "v_proj"]


def card(tmp_path: Path, header: str) -> ResolvedModel:
    (tmp_path / "README.md").write_text(f"---\n{header}\n---\n# a model\n")
    return ResolvedModel(tmp_path, "org/model")


def test_the_adapter_starts_from_weights_the_training_seed_gives():
    from loraplane.api.finetunejob import LoraSpec
    from transformers import LlamaConfig, LlamaForCausalLM

    def lora_a(seed: int):
        config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1)
        model = add_adapter(LlamaForCausalLM(config), LoraSpec(r=4, alpha=8), seed)
        return {k: v.clone() for k, v in model.named_parameters() if "lora_A" in k}

    first, again, other = lora_a(42), lora_a(42), lora_a(7)
    assert len(first) == 7  # all-linear on a Llama: q, k, v, o, gate, up, down
    assert all(first[k].equal(again[k]) for k in first)
    assert not any(first[k].equal(other[k]) for k in first)


def test_license_from_model_card_is_checked(tmp_path):
    model = card(tmp_path, "license: llama3\nlanguage: en")
    assert read_license(model) == "llama3"
    with pytest.raises(LicenseRefused, match=r"org/model is licensed 'llama3', which is not in "
                                             r"spec.baseModel.allowedLicenses \['apache-2.0', 'mit'\]"):
        check_license(model, ["apache-2.0", "MIT"])
    assert check_license(model, []) == "llama3"
    assert check_license(model, ["Llama3"]) == "llama3"


def test_license_other_uses_license_name_and_config_is_a_fallback(tmp_path):
    assert read_license(card(tmp_path, "license: other\nlicense_name: acme-1.0")) == "acme-1.0"
    (tmp_path / "README.md").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"license": "mit"}))
    assert check_license(ResolvedModel(tmp_path, "x"), ["mit"]) == "mit"


def test_unknown_license_is_refused_when_licenses_are_restricted(tmp_path):
    with pytest.raises(LicenseRefused, match="no license found"):
        check_license(ResolvedModel(tmp_path, "x"), ["apache-2.0"])


def test_local_uri_and_gguf_resolution(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    ref = resolve(BaseModelSpec(uri=str(gguf)))
    assert ref.path == tmp_path and ref.gguf_file == "m.gguf"
    with pytest.raises(BadInput, match="does not exist"):
        resolve(BaseModelSpec(uri=str(tmp_path / "nope")))


def test_unknown_hub_model_offline_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(BadInput, match="not found; tried Hugging Face cache.*HF_HUB_OFFLINE"):
        resolve(BaseModelSpec(name="acme/never-published-model"), cache_dir=tmp_path)


def test_gates_name_what_failed():
    gates = QualityGates(max_perplexity=5, min_exact_match_gain=0.1, max_regression_increase=0.05)
    good = {"perplexityAfter": 3.0, "exactMatchBefore": 0.0, "exactMatchAfter": 0.5,
            "regressionPerplexityBefore": 10.0, "regressionPerplexityAfter": 10.2}
    assert check_gates(gates, good) == []
    bad = {**good, "perplexityAfter": 7.5, "exactMatchAfter": 0.05, "regressionPerplexityAfter": 12.0}
    failed = check_gates(gates, bad)
    assert len(failed) == 3
    assert "perplexity 7.5 is above maxPerplexity 5" in failed[0]
    assert "less than minExactMatchGain 0.1" in failed[1]
    assert "+20.0%" in failed[2] and "maxRegressionIncrease 5%" in failed[2]
    assert check_gates(QualityGates(), bad) == []


def test_exact_match_normalisation():
    assert normalize("  The Pro plan costs $17/month. ") == normalize("the pro plan costs 17month")
    assert normalize("Yes!") == "yes"
    assert normalize("A  b\nc") == "a b c"
    assert normalize("seventeen") != normalize("17")


JOB = """
apiVersion: loraplane.io/v1alpha1
kind: FineTuneJob
metadata: {name: bot, namespace: ns, uid: u-1, generation: 2}
spec:
  baseModel: {name: HuggingFaceTB/SmolLM2-135M-Instruct}
  dataset: {uri: data.jsonl}
  output: {uri: s3://adapters/}
"""


def test_generation_batches_keep_within_the_token_budget_shortest_first():
    lengths = [30, 10, 20, 10, 40]
    batches = generation_batches(lengths, max_new_tokens=10, budget=80)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]  # every prompt, once
    assert batches == [[1, 3], [2, 0], [4]]  # 3 x (20 + 10) = 90 would not fit; 2 x (30 + 10) = 80 does
    for b in batches:
        assert max(lengths[i] + 10 for i in b) * len(b) <= 80 or len(b) == 1
    assert generation_batches([500], max_new_tokens=10, budget=80) == [[0]]  # too long still gets its own batch


def test_load_job_applies_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    job = load_job(path, output="file:///tmp/x", max_steps=3, epochs=1)
    assert job.spec.output.uri == "file:///tmp/x"
    assert job.spec.training.max_steps == 3 and job.spec.training.epochs == 1
    assert job.metadata.uid == "u-1"


def test_load_job_names_the_bad_field(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob",
                                "metadata": {"name": "bot"},
                                "spec": {"baseModel": {"name": "m"}, "dataset": {"uri": "d"},
                                         "output": {"uri": "o"}, "lora": {"r": 0}}}))
    with pytest.raises(BadInput, match=r"spec.lora.r: Input should be greater than or equal to 1"):
        load_job(path)


def test_cpu_quota_from_cgroup(tmp_path):
    from loraplane_trainer.training.precision import cpu_quota

    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert cpu_quota(str(f)) == 2
    f.write_text("max 100000\n")
    assert cpu_quota(str(f)) is None
    assert cpu_quota(str(tmp_path / "missing")) is None


def test_the_dataset_checks_models_are_unloaded_after_the_checks(monkeypatch):
    from loraplane_trainer.dataset import meaning
    from loraplane_trainer.dataset.meaning import embeddings

    monkeypatch.setitem(embeddings._SHARED, "a-model", object())
    meaning.unload()
    assert embeddings._SHARED == {}
