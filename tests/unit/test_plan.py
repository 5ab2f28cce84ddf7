"""The plan's memory, fit, time and cost model against known figures (no torch, no weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from loraplane.api.finetunejob import FineTuneJob, FineTuneJobSpec, PlanStatus
from loraplane.cli import cli
from loraplane.planning import (
    DatasetSize,
    ShapeUnknown,
    Strategy,
    estimate_memory,
    find_gpu,
    make_plan,
    model_shape,
    shape_from_config,
)
from loraplane.planning.plan import flops_per_token
from loraplane.planning.report import plan_status

ROOT = Path(__file__).resolve().parents[2]
GB = 1e9


def spec(**changes) -> FineTuneJobSpec:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())["spec"]
    for path, value in changes.items():
        *head, last = path.split(".")
        node = obj
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return FineTuneJob.model_validate({"metadata": {"name": "x"}, "spec": obj}).spec


def memory(name: str, strategy: Strategy, world: int = 1, tokens: int = 1024, **kw):
    return estimate_memory(model_shape(name), strategy=strategy, world=world, r=8, target_modules=["all-linear"],
                           dropout=0.1, tokens_per_micro_batch=tokens, target_tokens_per_micro_batch=tokens // 2, **kw)


@pytest.mark.parametrize(("name", "params_b"), [
    ("meta-llama/Llama-2-7b-hf", 6.74),
    ("meta-llama/Meta-Llama-3-8B-Instruct", 8.03),
    ("meta-llama/Llama-2-70b-chat-hf", 68.98),
    ("mistralai/Mistral-7B-v0.1", 7.24),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 0.1345),
])
def test_parameter_count_from_config_matches_the_published_size(name, params_b):
    assert model_shape(name).params / 1e9 == pytest.approx(params_b, rel=0.01)


@pytest.mark.parametrize(("strategy", "world", "weights_gb"), [
    (Strategy.SINGLE, 1, 13.5),  # 7B in bf16: ~14 GB
    (Strategy.QLORA, 1, 4.4),  # 4-bit: ~4 GB (embeddings and head stay fp32 in our trainer)
    (Strategy.FSDP, 4, 13.5 / 4 + 2 * 13.5 / 32),  # a quarter each, plus two gathered layers
])
def test_7b_weights(strategy, world, weights_gb):
    m = memory("meta-llama/Llama-2-7b-hf", strategy, world)
    assert m.weights / GB == pytest.approx(weights_gb, rel=0.05)


def test_lora_state_is_16_bytes_per_parameter_and_sharded_by_fsdp():
    one = memory("meta-llama/Meta-Llama-3-8B", Strategy.SINGLE)
    four = memory("meta-llama/Meta-Llama-3-8B", Strategy.FSDP, 4)
    # Llama-3-8B, r=8, all linear layers: 21.0M LoRA parameters (peft prints the same).
    assert (one.lora + one.gradients + one.optimizer) / 16 == pytest.approx(20_971_520, rel=0.001)
    assert four.optimizer == one.optimizer // 4


def test_activations_scale_with_tokens_and_checkpointing_saves_most_of_them():
    a1 = memory("meta-llama/Llama-2-7b-hf", Strategy.SINGLE, tokens=1024)
    a4 = memory("meta-llama/Llama-2-7b-hf", Strategy.SINGLE, tokens=4096)
    ckpt = memory("meta-llama/Llama-2-7b-hf", Strategy.SINGLE, tokens=4096, checkpointing=True)
    assert a4.activations == pytest.approx(4 * a1.activations, rel=0.01)
    assert ckpt.activations < a4.activations / 10


@pytest.mark.parametrize(("gpu", "key"), [
    ("NVIDIA-A100-SXM4-80GB", "a100-80gb"), ("NVIDIA-A100-PCIE-40GB", "a100-40gb"), ("NVIDIA-H100-80GB-HBM3", "h100"),
    ("NVIDIA-H100-PCIe", "h100-pcie"), ("NVIDIA-H200", "h200"), ("NVIDIA-L4", "l4"),
    ("NVIDIA-GeForce-RTX-3090", "rtx3090"), ("h100", "h100"), ("Tesla-T4", None),
])
def test_gpu_labels(gpu, key):
    found = find_gpu(gpu)
    assert (found.key if found else None) == key


@pytest.mark.parametrize(("model", "gpus", "gpu", "quant", "fits"), [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 1, "NVIDIA-L4", "none", True),
    ("meta-llama/Llama-2-7b-hf", 1, "NVIDIA-A100-PCIE-40GB", "none", True),
    ("meta-llama/Llama-2-7b-hf", 1, "NVIDIA-GeForce-RTX-3090", "4bit", True),
    ("meta-llama/Meta-Llama-3-8B", 1, "NVIDIA-A100-SXM4-80GB", "none", True),
    ("meta-llama/Llama-2-7b-hf", 1, "NVIDIA-L4", "none", False),
    ("meta-llama/Llama-2-70b-hf", 1, "NVIDIA-A100-SXM4-80GB", "4bit", True),  # QLoRA 70B on one 80 GB GPU
    ("meta-llama/Llama-2-70b-hf", 1, "NVIDIA-L4", "4bit", False),
])
def test_fit_of_the_jobs_own_resources(model, gpus, gpu, quant, fits):
    s = spec(**{"baseModel.name": model, "resources.gpus": gpus, "resources.gpuType": gpu, "lora.quantization": quant,
                "training.batchSize": 1})
    plan = make_plan(s, model_shape(model))
    assert plan.fits is fits
    if not fits:  # the plan names what would fit
        assert any(f.fits for f in plan.by_gpu)
        assert "fits:" in plan.summary()


def test_auto_shards_when_a_replica_does_not_fit_and_names_the_nodes_it_needs():
    model, h100 = "meta-llama/Llama-2-70b-hf", "NVIDIA-H100-80GB-HBM3"
    # 512-token examples: at 1,024 a 70B layer stack's activations alone take about 37 GB per GPU
    # without gradient checkpointing, which FSDP does not shard.
    shape = model_shape(model)
    ddp = make_plan(spec(**{"baseModel.name": model, "resources.gpus": 8, "resources.gpuType": h100,
                            "resources.strategy": "DDP", "training.batchSize": 1, "training.maxTokens": 512}), shape)
    assert ddp.job.strategy is Strategy.DDP and ddp.fits is False  # a full 70B replica per GPU
    auto = make_plan(spec(**{"baseModel.name": model, "resources.gpus": 8, "resources.gpuType": h100,
                             "training.batchSize": 1, "training.maxTokens": 512}), shape)
    assert auto.job.strategy is Strategy.FSDP and auto.fits is True and auto.nodes_needed == 1
    # One GPU per node, on one node: does not fit; the plan says how many such nodes it needs.
    one = make_plan(spec(**{"baseModel.name": model, "resources.gpus": 1, "resources.gpuType": h100,
                            "training.batchSize": 1, "training.maxTokens": 512}), shape)
    need = one.nodes_needed
    assert one.fits is False and need is not None and need > 1
    assert f"asks 1 node(s), needs {need}" in one.summary()
    fewer = make_plan(spec(**{"baseModel.name": model, "resources.gpus": 1, "resources.nodes": need // 2,
                              "resources.gpuType": h100, "training.batchSize": 1, "training.maxTokens": 512}), shape)
    assert fewer.fits is False and fewer.nodes_needed == need
    enough = make_plan(spec(**{"baseModel.name": model, "resources.gpus": 1, "resources.nodes": need,
                               "resources.gpuType": h100, "training.batchSize": 1, "training.maxTokens": 512}), shape)
    assert enough.fits is True and enough.job.strategy is Strategy.FSDP and enough.job.gpus == need
    status = plan_status(enough)
    assert status["nodes"] == need and status["nodesNeeded"] == need and status["strategy"] == "FSDP"
    # A 7B model fits one GPU: Auto keeps a replica per GPU (DDP), over nodes too.
    small = make_plan(spec(**{"resources.gpus": 1, "resources.nodes": 2, "resources.gpuType": h100}),
                      model_shape("meta-llama/Llama-2-7b-hf"))
    assert small.job.strategy is Strategy.DDP and small.fits


def test_gradient_checkpointing_makes_the_70b_fsdp_job_fit_and_the_refusal_says_so():
    model, h100 = "meta-llama/Llama-2-70b-hf", "NVIDIA-H100-80GB-HBM3"
    shape = model_shape(model)
    asked = {"baseModel.name": model, "resources.gpus": 8, "resources.gpuType": h100,
             "resources.strategy": "FSDP", "training.batchSize": 1, "training.maxTokens": 1024}
    plain = make_plan(spec(**asked), shape)
    # 1,024-token examples: the activations FSDP does not shard take the 8 x 80 GB over.
    assert plain.job.strategy is Strategy.FSDP and plain.fits is False
    assert plain.checkpointing is not None and plain.checkpointing.total < plain.job.memory.total
    assert "with training.gradientCheckpointing: true it needs" in plain.summary()
    on = make_plan(spec(**asked, **{"training.gradientCheckpointing": True}), shape)
    assert on.fits is True and on.gradient_checkpointing
    assert on.job.memory.total == pytest.approx(plain.checkpointing.total)
    assert on.job.memory.activations < plain.job.memory.activations / 10  # one hidden state per layer + one layer
    assert "gradient checkpointing)" in on.summary()
    # A forward again in backward: a third more compute, so more time for the same tokens.
    data = DatasetSize(train_tokens=1_000_000, examples=1_000, longest_example=1024)
    assert make_plan(spec(**asked, **{"training.gradientCheckpointing": True}), shape, data).job.seconds > \
        make_plan(spec(**asked), shape, data).job.seconds * 1.2
    # A job that fits without it is not told to turn it on.
    small = make_plan(spec(**{"resources.gpuType": h100}), model_shape("meta-llama/Llama-2-7b-hf"))
    assert small.fits and "gradientCheckpointing" not in small.summary()


def test_70b_proposes_fsdp_or_qlora_per_gpu():
    plan = make_plan(spec(**{"training.batchSize": 1}), model_shape("meta-llama/Llama-2-70b-hf"))
    by = {f.gpu.key: f for f in plan.by_gpu}
    assert by["h200"].strategy in (Strategy.QLORA, Strategy.FSDP) and by["h200"].fits
    assert by["rtx3090"].strategy is Strategy.QLORA_FSDP and by["rtx3090"].gpus >= 2


def test_time_and_cost_from_tokens_throughput_and_price():
    s = spec(**{"baseModel.name": "meta-llama/Meta-Llama-3-8B", "resources.gpuType": "NVIDIA-H100-80GB-HBM3",
                "resources.pricePerGpuHour": 3.78, "training.epochs": 1, "training.batchSize": 1})
    shape = model_shape("meta-llama/Meta-Llama-3-8B")
    data = DatasetSize(train_tokens=10_000_000, examples=10_000, longest_example=1024)
    plan = make_plan(s, shape, data)
    # 40 % of 989 TFLOP/s over ~4 x 7B FLOPs per token (frozen weights: no weight gradients).
    tps = 0.40 * 989e12 / flops_per_token(shape, 1024, target_fraction=0.5, checkpointing=False)
    assert plan.job.seconds == pytest.approx(10_000_000 / tps)
    assert plan.job.cost == pytest.approx(plan.job.seconds / 3600 * 3.78)
    status = plan_status(plan)
    PlanStatus.model_validate(status)
    assert status["predictedCost"] == f"{plan.job.cost:.2f}" and status["fits"] is True


def test_shape_errors_name_the_field():
    with pytest.raises(ShapeUnknown, match="hidden_size"):
        shape_from_config({"model_type": "llama"}, "x/config.json")
    with pytest.raises(ShapeUnknown, match="GGUF"):
        model_shape(uri="s3://models/m.gguf")


def test_directory_config_is_read(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True}))
    assert model_shape(uri=str(tmp_path)).params / 1e6 == pytest.approx(494, rel=0.01)  # Qwen2.5-0.5B


def test_cli_prints_the_table_for_the_example_and_a_70b_job(tmp_path):
    result = CliRunner().invoke(cli, ["plan", str(ROOT / "examples" / "finetunejob.yaml")])
    assert result.exit_code == 0, result.output
    assert "A100 80GB" in result.output and "H200 141GB" in result.output and "single GPU" in result.output
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["spec"]["baseModel"]["name"] = "meta-llama/Llama-2-70b-hf"
    obj["spec"]["resources"].update(gpus=2, gpuType="NVIDIA-H100-80GB-HBM3")
    obj["spec"]["dataset"]["uri"] = str(ROOT / "examples" / "data" / "support.jsonl")
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(obj))
    result = CliRunner().invoke(cli, ["plan", str(big)])
    assert result.exit_code == 1, result.output  # does not fit 2 x H100 as DDP
    assert "QLoRA" in result.output and "FSDP" in result.output and "fits:" in result.output
