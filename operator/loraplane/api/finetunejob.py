"""The FineTuneJob API: a dataset in, a evaluated, versioned LoRA adapter out."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import (
    DNS_SUBDOMAIN_PATTERN,
    ApiModel,
    Condition,
    ConfigMapKeyRef,
    LabelValue,
    ObjectMeta,
    SecretKeyRef,
    SecretRef,
    StatusModel,
    Toleration,
    Uri,
    cel,
)
from .states import FineTuneJobPhase, HumanEvaluationState


def _cron_field(number: str) -> str:
    """One cron field: *, a number or a range, each with an optional /step; comma lists of those."""
    element = rf"(\*|{number}(-{number})?)(/[0-9]{{1,2}})?"
    return rf"{element}(,{element})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
# Five fields with their ranges checked (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7),
# so "61 25 * * *" is refused at apply time, not by the scheduler later.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|hourly)|"
    + r"\s+".join([
        _cron_field(r"[0-5]?[0-9]"),
        _cron_field(r"(2[0-3]|[01]?[0-9])"),
        _cron_field(r"(3[01]|[12][0-9]|0?[1-9])"),
        _cron_field(rf"(1[0-2]|0?[1-9]|{_MONTHS})"),
        _cron_field(rf"([0-7]|{_DAYS})"),
    ])
    + r")$"
)

AdapterVerdict = Literal["accepted", "rejected", "pending"]


class BaseModelSpec(ApiModel):
    """The model the adapter is trained on."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("has(self.name) != has(self.uri)", "baseModel needs exactly one of name or uri"),
            ]
        }
    }

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Hugging Face Hub id of the base model, e.g. HuggingFaceTB/SmolLM2-135M-Instruct.",
    )
    uri: Uri | None = Field(
        default=None,
        description="Where the base model lives instead of the Hub: a local directory, any fsspec URI "
        "(s3://, gs://, file://), or a .gguf file.",
    )
    gguf_file: str | None = Field(
        default=None, max_length=256, description="File name of a GGUF model inside name or uri."
    )
    revision: str | None = Field(default=None, max_length=128, description="Hub revision (branch, tag or commit).")
    allowed_licenses: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="SPDX-style license ids the base model may carry (e.g. apache-2.0, mit). "
        "Empty allows any license.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a Hub token for gated or private models."
    )


class ModerationEndpoint(ApiModel):
    """An OpenAI-compatible moderation endpoint (POST {endpoint}/moderations) that the harmful-content check asks
    about the texts the offline classifiers did not flag, the likeliest first."""

    endpoint: Uri = Field(description="Base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1.")
    model: str | None = Field(
        default=None, max_length=256, description="Moderation model to ask (e.g. omni-moderation-latest); unset: "
        "the endpoint's default."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the API key.")
    batch_size: int = Field(default=32, ge=1, le=256, description="Texts per request.")
    max_texts: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="Distinct texts sent at most, the ones the offline classifiers score highest first.",
    )
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries per request on 429/5xx, with backoff.")
    timeout_seconds: float = Field(default=30, gt=0, le=600, description="Timeout of one request.")


class DatasetChecks(ApiModel):
    """Thresholds of the dataset checks. An error fails the job; a warning is reported."""

    min_examples: int = Field(default=50, ge=1, le=10_000_000, description="Fewer examples than this is an error.")
    recommended_examples: int = Field(
        default=200, ge=1, le=10_000_000, description="Fewer examples than this is a warning."
    )
    max_duplicate_fraction: float = Field(
        default=0.05, ge=0, le=1, description="Exact and near duplicates above this fraction are an error."
    )
    near_duplicate_threshold: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity (MinHash of character 3-grams of the text without casing, "
        "punctuation and greetings) from which two prompts naming the same identifiers are near copies: they "
        "stay on one side of the split and are compared for contradictions.",
    )
    max_contradictions: int = Field(
        default=0,
        ge=0,
        description="Pairs of examples answering the same question in ways that disagree allowed before it is "
        "an error.",
    )
    contradiction_similarity: float = Field(
        default=0.85,
        ge=0.5,
        le=1,
        description="Embedding cosine similarity from which two prompts naming the same identifiers ask the "
        "same question (near copies always do).",
    )
    max_paraphrase_group_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="A paraphrase group (differently worded prompts sharing one answer) holding more than this "
        "share of the examples is an error; unset: groups are only reported.",
    )
    embedding_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        min_length=1,
        max_length=512,
        description="Sentence-transformers model of the meaning checks: a Hub id present in the image's cache, "
        "a directory, or a storage URI (s3://...). The default ships with the trainer.",
    )
    max_malformed: int = Field(
        default=0, ge=0, description="Malformed lines allowed before it is an error (they are always skipped)."
    )
    max_intent_share: float = Field(
        default=0.4, gt=0, le=1, description="An intent holding more than this share of examples is dominant."
    )
    min_intent_share: float = Field(
        default=0.005, ge=0, lt=1, description="An intent holding less than this share of examples is starved."
    )
    length_outlier_z: float = Field(
        default=4.0, gt=0, le=100, description="Completion-length z-score (of log length) beyond which it is an outlier."
    )
    pii: Literal["off", "warning", "error"] = Field(
        default="warning", description="How personal data (e-mails, phones, card numbers, keys) is treated."
    )
    harmful: Literal["off", "warning", "error"] = Field(
        default="warning",
        description="How toxic, hateful, obscene or sexual content, self-harm, threats and weapons in prompts or "
        "answers are treated; augmentation drops such examples unless off.",
    )
    harmful_threshold: float = Field(
        default=0.7, ge=0.5, le=1, description="Classifier probability (of its worst sentence) from which a text is harmful."
    )
    moderation: ModerationEndpoint | None = Field(
        default=None,
        description="Also ask an OpenAI-compatible moderation endpoint about the texts the offline classifiers "
        "did not flag; a text it flags is harmful. Unset: offline classifiers only.",
    )
    fail_on_warnings: bool = Field(default=False, description="Treat every warning as an error.")


class FieldMapping(ApiModel):
    """Column names of a dataset that uses other names than prompt/completion (Alpaca, CSV, ...)."""

    prompt: str = Field(default="prompt", max_length=128, description="Column holding the prompt (instruction).")
    input: str | None = Field(
        default=None, max_length=128, description="Optional column appended to the prompt (Alpaca's input)."
    )
    completion: str = Field(default="completion", max_length=128, description="Column holding the answer.")
    system: str | None = Field(default=None, max_length=128, description="Optional column with a system prompt.")
    intent: str | None = Field(default=None, max_length=128, description="Optional column with the intent label.")


class InlineExample(ApiModel):
    """One example written into the spec (small sets only)."""

    prompt: str | None = Field(default=None, max_length=65536, description="User prompt.")
    completion: str | None = Field(default=None, max_length=65536, description="Expected answer.")
    messages: list[dict[str, str]] | None = Field(
        default=None, max_length=256, description="Chat messages ({role, content}) instead of prompt/completion."
    )
    intent: str | None = Field(default=None, max_length=128, description="Optional intent label.")
    tags: list[str] | None = Field(default=None, max_length=32, description="Optional tags.")


class DatasetSpec(ApiModel):
    """Where the training data comes from and how it is checked and split."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "[has(self.uri), has(self.configMapRef), has(self.inline)].filter(x, x).size() == 1",
                    "dataset needs exactly one source: uri, configMapRef or inline",
                ),
            ]
        }
    }

    uri: Uri | None = Field(default=None, description="Dataset file: local path, file://, s3://, gs:// or any fsspec URI.")
    config_map_ref: ConfigMapKeyRef | None = Field(default=None, description="Dataset stored in a ConfigMap key.")
    inline: list[InlineExample] | None = Field(
        default=None, max_length=500, description="Examples written into the spec, for small sets."
    )
    format: Literal["auto", "prompt-completion", "chat", "mapped"] = Field(
        default="auto", description="Record format; auto detects prompt/completion, chat or mapped columns."
    )
    field_mapping: FieldMapping | None = Field(
        default=None, description="Column names for the mapped format (Alpaca, CSV, ...)."
    )
    validation_uri: Uri | None = Field(
        default=None,
        description="A user-supplied validation set. When set, no split is made and leakage is measured instead.",
    )
    validation_split: float = Field(
        default=0.15, ge=0.05, le=0.5, description="Fraction of examples held out for validation."
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Seed of the split and the augmentation.")
    checks: DatasetChecks = Field(default_factory=DatasetChecks, description="Thresholds of the dataset checks.")
    keep_paraphrases_together: bool = Field(
        default=False,
        description="Keep each paraphrase group (differently worded prompts sharing one answer) on one side of "
        "the split. Off by default: validation then asks learned questions in new words; on, it asks "
        "questions whose answers were never trained. Near copies are always kept together.",
    )


class PromptVariations(ApiModel):
    """Seeded, rule-based variations of training prompts; completions are never changed."""

    per_example: int = Field(default=0, ge=0, le=10, description="Variations added per training example.")
    methods: list[Literal["template", "casing", "punctuation", "typos", "greeting"]] = Field(
        default_factory=lambda: ["template", "casing", "punctuation", "typos", "greeting"],
        max_length=5,
        description="Which kinds of variation may be used.",
    )


class SyntheticAugmentation(ApiModel):
    """Synthetic examples and paraphrases from a stronger model behind an OpenAI-compatible endpoint."""

    endpoint: Uri = Field(description="Base URL of an OpenAI-compatible API, e.g. http://llm.internal/v1.")
    model: str = Field(min_length=1, max_length=256, description="Model name to ask.")
    count: int = Field(default=100, ge=1, le=100_000, description="Synthetic examples to add.")
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the API key.")
    prompt_template: str | None = Field(
        default=None,
        max_length=8192,
        description="Prompt that asks for a paraphrase; {prompt} and {completion} are filled in.",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight at once.")
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries per request on 429/5xx, with backoff.")
    temperature: float = Field(default=0.8, ge=0, le=2, description="Sampling temperature.")


class BackTranslation(ApiModel):
    """Training prompts translated into a pivot language and back by a model behind an OpenAI-compatible
    endpoint: new wordings with the same meaning; answers are never changed."""

    endpoint: Uri = Field(description="Base URL of an OpenAI-compatible API, e.g. http://llm.internal/v1.")
    model: str = Field(min_length=1, max_length=256, description="Model name to ask.")
    pivot_languages: list[str] = Field(
        default_factory=lambda: ["German"],
        min_length=1,
        max_length=8,
        description="Languages to translate through, in turn (names the model understands, e.g. German, French).",
    )
    count: int = Field(default=100, ge=1, le=100_000, description="Back-translated examples to add at most.")
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the API key.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight at once.")
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries per request on 429/5xx, with backoff.")
    temperature: float = Field(default=0.3, ge=0, le=2, description="Sampling temperature.")


class AugmentationSpec(ApiModel):
    """Train-side augmentation. Nothing augmented may be a near duplicate of a validation example."""

    prompt_variations: PromptVariations | None = Field(default=None, description="Rule-based prompt variations.")
    synthetic: SyntheticAugmentation | None = Field(default=None, description="Model-generated examples.")
    back_translation: BackTranslation | None = Field(
        default=None, description="Prompts reworded by translation into a pivot language and back."
    )


class LoraSpec(ApiModel):
    """LoRA hyperparameters."""

    r: int = Field(default=8, ge=1, le=256, description="Rank of the update matrices.")
    alpha: int = Field(default=32, ge=1, le=1024, description="Scaling numerator (lora_alpha).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        min_length=1,
        max_length=64,
        description="Modules to adapt; all-linear adapts every linear layer but the output head.",
    )
    quantization: Literal["none", "4bit"] = Field(
        default="none", description="4bit trains QLoRA on a CUDA GPU (bitsandbytes); refused on CPU."
    )


class EarlyStopping(ApiModel):
    """Stop when validation loss stops improving; the best checkpoint is kept."""

    patience: int = Field(default=2, ge=1, le=100, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0, description="Smallest decrease that counts as improvement.")


class TrainingSpec(ApiModel):
    """Optimisation hyperparameters."""

    learning_rate: float = Field(default=2.0e-4, gt=0, lt=1, description="Peak learning rate.")
    batch_size: int = Field(default=4, ge=1, le=1024, description="Sequences per device step (before packing).")
    gradient_accumulation: int = Field(default=1, ge=1, le=1024, description="Steps accumulated per optimizer step.")
    epochs: int = Field(default=3, ge=1, le=50, description="Passes over the training split.")
    max_steps: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Stop after this many optimizer steps (overrides epochs)."
    )
    warmup_ratio: float = Field(default=0.03, ge=0, le=0.5, description="Fraction of steps spent warming up.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule."
    )
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay.")
    max_tokens: int = Field(default=1024, ge=16, le=131072, description="Longest example in tokens; longer ones are truncated.")
    packing: bool = Field(default=True, description="Pack examples into full sequences instead of padding.")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Keep only each layer's input for backward and recompute the rest: far less activation "
        "memory for about a third more compute per step. QLoRA always does.",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto", description="auto uses bf16 where the hardware runs it fast, fp32 otherwise."
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1,
                      description="Seed of the adapter's initial LoRA weights and of the order of the examples.")
    eval_steps: int | None = Field(
        default=None, ge=1, description="Evaluate every N optimizer steps; unset evaluates every epoch."
    )
    early_stopping: EarlyStopping | None = Field(default_factory=EarlyStopping, description="Early stopping.")
    checkpoint_interval_steps: int = Field(
        default=200, ge=1, le=1_000_000, description="Checkpoint to object storage every N steps (and every epoch)."
    )


class QualityGates(ApiModel):
    """A run failing any gate is published as rejected and never served."""

    max_perplexity: float | None = Field(default=None, gt=0, description="Highest validation perplexity after training.")
    min_exact_match_gain: float | None = Field(
        default=None, ge=-1, le=1, description="Smallest rise of validation exact match over the base model."
    )
    max_regression_increase: float | None = Field(
        default=None,
        ge=0,
        description="Largest relative rise of perplexity on the general regression set (0.05 = 5%).",
    )
    max_harmful_compliance_increase: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest rise of the share of safety probes (harmful requests) the adapter complies with, "
        "over the base model (0.1 = 10 points).",
    )


class JudgeEndpoint(ApiModel):
    """A stronger model behind an OpenAI-compatible API that judges answers."""

    endpoint: Uri = Field(description="Base URL of an OpenAI-compatible API, e.g. http://llm.internal/v1.")
    model: str = Field(min_length=1, max_length=256, description="Model name to ask.")
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the API key.")


class SafetyEvaluation(ApiModel):
    """Harmful-request probes asked of the base model and of the adapter before the adapter may serve."""

    enabled: bool = Field(default=True, description="Run the safety probes.")
    probe_set_uri: Uri | None = Field(
        default=None,
        description="JSONL of {category, prompt} probes; unset uses the small set shipped with LoRAPlane.",
    )
    system_prompt: str | None = Field(
        default=None, max_length=8192, description="System prompt the chatbot serves with; the probes use it too."
    )
    max_new_tokens: int = Field(default=48, ge=8, le=1024, description="Tokens generated per probe answer.")
    judge: JudgeEndpoint | None = Field(
        default=None, description="Judge compliance with this model as well as by refusal detection."
    )


class HumanEvaluationGate(ApiModel):
    """A blind human evaluation the adapter must pass before it counts as accepted (`loraplane eval`)."""

    min_win_rate: float = Field(
        ge=0, le=1, description="Lowest win rate of the adapter in the evaluation attached to it "
        "(`loraplane eval results --attach`); until one with enough ratings is attached the adapter is pending."
    )
    min_raters: int = Field(default=3, ge=1, le=1000, description="Raters every item of the session needs.")


class EvaluationSpec(ApiModel):
    """Before/after evaluation of the adapter."""

    regression_set_uri: Uri | None = Field(
        default=None, description="General prompts to catch forgetting; unset uses the set shipped with the trainer."
    )
    max_examples: int = Field(
        default=200, ge=1, le=100_000, description="Validation examples used for exact match (greedy generation)."
    )
    max_new_tokens: int = Field(default=96, ge=1, le=4096, description="Tokens generated per exact-match answer.")
    safety: SafetyEvaluation = Field(default_factory=SafetyEvaluation, description="Safety probes.")
    gates: QualityGates = Field(default_factory=QualityGates, description="Quality gates.")
    human: HumanEvaluationGate | None = Field(
        default=None, description="Hold an adapter that passed the automatic gates until people sign it off."
    )


class ParallelStrategy(StrEnum):
    """How several GPUs (or nodes) share the training: each holds a replica (DDP) or a shard (FSDP)."""

    AUTO = "Auto"
    DDP = "DDP"
    FSDP = "FSDP"


class ResourcesSpec(ApiModel):
    """Where and on what the training pod runs."""

    gpus: int = Field(default=1, ge=0, le=16, description="nvidia.com/gpu per pod; more than 1 trains with torchrun.")
    nodes: int = Field(
        default=1, ge=1, le=64,
        description="Pods (nodes) of the run, each with `gpus` GPUs. One is a batch/v1 Job; more are a "
                    "jobset.x-k8s.io JobSet with torch's c10d rendezvous at the first pod.",
    )
    strategy: ParallelStrategy = Field(
        default=ParallelStrategy.AUTO,
        description="Auto: DDP (a model replica per GPU) when the plan says the model fits one GPU, else "
                    "FSDP (weights and LoRA state sharded over every GPU of the run). DDP or FSDP forces one.",
    )
    gpu_type: LabelValue | None = Field(
        default=None, description="Value of the nvidia.com/gpu.product node label to require."
    )
    cpu: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU request, e.g. 4 or 500m.")
    memory: str | None = Field(
        default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", description="Memory request, e.g. 32Gi."
    )
    queue: LabelValue | None = Field(
        default=None, description="Kueue LocalQueue; the Job then starts suspended for Kueue to admit."
    )
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN,
                                            description="PriorityClass of the pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels to require.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 Affinity, passed to the pod as is.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=60, description="Wall-clock limit of the whole training Job."
    )
    backoff_limit: int = Field(default=3, ge=0, le=20, description="Retries of real failures (evictions do not count).")
    price_per_gpu_hour: float | None = Field(
        default=None, ge=0, description="Price of one GPU-hour, for status.estimatedCost."
    )


class OutputSpec(ApiModel):
    """Where adapters, checkpoints and progress are written."""

    uri: Uri = Field(description="Object-storage prefix, e.g. s3://adapters/ or file:///data/adapters.")
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_ENDPOINT_URL.",
    )
    delete_adapters_on_delete: bool = Field(
        default=False, description="Delete published adapters with the FineTuneJob (kept by default)."
    )


class FineTuneJobSpec(ApiModel):
    """Desired state of a FineTuneJob."""

    base_model: BaseModelSpec = Field(description="The base model.")
    dataset: DatasetSpec = Field(description="The training data.")
    augmentation: AugmentationSpec | None = Field(default=None, description="Train-side augmentation.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA hyperparameters.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Training hyperparameters.")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="Evaluation and quality gates.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Scheduling and GPUs.")
    output: OutputSpec = Field(description="Where adapters are published.")
    schedule: str | None = Field(
        default=None,
        max_length=128,
        pattern=CRON_PATTERN,
        description="Cron schedule to retrain (skipped when the dataset has not changed).",
    )
    suspend: bool = Field(default=False, description="Pause: no new training runs start while true.")


class ProgressStatus(StatusModel):
    """Training progress, copied from the run's progress.json."""

    epoch: float | None = Field(default=None, ge=0, description="Current epoch (fractional).")
    total_epochs: int | None = Field(default=None, ge=0, description="Planned epochs.")
    step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Planned optimizer steps.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Percent done.")
    eta: datetime | None = Field(default=None, description="Estimated completion time.")
    tokens_per_second: float | None = Field(default=None, ge=0, description="Training throughput.")
    train_loss: float | None = Field(default=None, description="Last training loss.")
    eval_loss: float | None = Field(default=None, description="Last validation loss.")
    updated_at: datetime | None = Field(default=None, description="When the trainer last wrote progress.")


class DatasetProblem(StatusModel):
    """One dataset check that found something."""

    check: str = Field(max_length=64, description="Check name.")
    severity: Literal["error", "warning"] = Field(description="error fails the job.")
    count: int = Field(ge=0, description="How many examples it concerns.")
    message: str = Field(default="", max_length=512, description="One-line summary.")
    lines: list[int] = Field(default_factory=list, max_length=10, description="First file lines at fault.")


class DatasetStatus(StatusModel):
    """Compact dataset report summary."""

    examples: int | None = Field(default=None, ge=0, description="Valid examples loaded.")
    train: int | None = Field(default=None, ge=0, description="Examples in the training split.")
    validation: int | None = Field(default=None, ge=0, description="Examples in the validation split.")
    augmented: int | None = Field(default=None, ge=0, description="Examples added by augmentation.")
    errors: int | None = Field(default=None, ge=0, description="Checks failed with severity error.")
    warnings: int | None = Field(default=None, ge=0, description="Checks reporting warnings.")
    hash: str | None = Field(default=None, max_length=80, description="Content hash of the dataset (sha256).")
    top_problems: list[DatasetProblem] = Field(default_factory=list, max_length=8, description="The main findings.")


class MetricsStatus(StatusModel):
    """Evaluation figures of the last run."""

    train_loss: float | None = Field(default=None, description="Final training loss.")
    eval_loss: float | None = Field(default=None, description="Best validation loss.")
    perplexity_before: float | None = Field(default=None, description="Validation perplexity of the base model.")
    perplexity_after: float | None = Field(default=None, description="Validation perplexity with the adapter.")
    exact_match_before: float | None = Field(default=None, description="Validation exact match of the base model.")
    exact_match_after: float | None = Field(default=None, description="Validation exact match with the adapter.")
    regression_perplexity_before: float | None = Field(default=None, description="Regression-set perplexity before.")
    regression_perplexity_after: float | None = Field(default=None, description="Regression-set perplexity after.")
    harmful_compliance_before: float | None = Field(
        default=None, description="Share of safety probes the base model complied with."
    )
    harmful_compliance_after: float | None = Field(
        default=None, description="Share of safety probes the adapter complied with."
    )


class HumanEvaluationStatus(StatusModel):
    """The human gate's view of the evaluation attached to an adapter."""

    state: HumanEvaluationState = Field(description="Pending, Passed or Failed.")
    session: str | None = Field(default=None, max_length=128, description="The evaluation session.")
    win_rate: float | None = Field(default=None, ge=0, le=1, description="The adapter's win rate in it.")
    raters: int | None = Field(default=None, ge=0, description="Raters who rated.")
    items: int | None = Field(default=None, ge=0, description="Prompts in the session.")
    message: str = Field(default="", max_length=1024, description="The gate's account in one line.")


class AdapterStatus(StatusModel):
    """The adapter the last run published."""

    version: str = Field(max_length=63, description="Adapter version, e.g. v3.")
    uri: str = Field(max_length=2048, description="Prefix of the published adapter directory.")
    sha256: str | None = Field(default=None, max_length=80, description="Digest of the adapter's manifest.")
    verdict: AdapterVerdict = Field(
        description="accepted, rejected by a quality gate, or pending a human evaluation (spec.evaluation.human)."
    )
    reason: str | None = Field(default=None, max_length=1024, description="Why it was rejected.")
    published_at: datetime | None = Field(default=None, description="When the manifest was written.")
    human_evaluation: HumanEvaluationStatus | None = Field(
        default=None, description="The human gate's account (with spec.evaluation.human)."
    )


class RunStatus(StatusModel):
    """The run the FineTuneJob asks for now: what its Job and progress.json are named after."""

    generation: int = Field(ge=0, description="Generation whose spec the run trains (suspend/schedule edits keep it).")
    spec_hash: str = Field(max_length=64, description="Hash of that spec without the fields that do not retrain.")
    suffix: str | None = Field(default=None, max_length=63, description="Suffix of a scheduled rerun of it.")
    run_id: str = Field(max_length=128, description="Run id (<uid>-<generation>[-<suffix>]).")
    job_name: str = Field(max_length=253, description="Name of the run's training Job.")


class FinishedRun(StatusModel):
    """A run that ended: what it used (status.gpuSeconds adds these up)."""

    run_id: str = Field(max_length=128, description="Run id.")
    phase: FineTuneJobPhase = Field(description="Succeeded or Failed.")
    gpu_seconds: float = Field(default=0, ge=0, description="GPU-seconds the run used.")


class PlanMemory(StatusModel):
    """Predicted peak memory per GPU of the job's strategy, in GiB."""

    total: float = Field(ge=0, description="Peak per GPU.")
    weights: float = Field(ge=0, description="Frozen base weights (4-bit for QLoRA), this GPU's shard.")
    lora: float = Field(ge=0, description="LoRA weights, their gradients and AdamW state.")
    activations: float = Field(ge=0, description="Saved activations and logits at maxTokens and batchSize.")
    activations_checkpointed: float | None = Field(
        default=None, ge=0, description="The same with gradient checkpointing."
    )


class PlanStatus(StatusModel):
    """What the job needs, predicted from the model's config before any pod runs."""

    parameters: int | None = Field(default=None, ge=0, description="Parameters of the base model.")
    lora_parameters: int | None = Field(default=None, ge=0, description="Trainable LoRA parameters.")
    strategy: str | None = Field(default=None, max_length=32, description="single GPU, DDP, FSDP, QLoRA.")
    gpu: str | None = Field(default=None, max_length=64, description="The GPU type the job asks for.")
    gpus: int | None = Field(default=None, ge=0, description="GPUs in all.")
    nodes: int | None = Field(default=None, ge=0, description="Nodes the job asks for (resources.nodes).")
    nodes_needed: int | None = Field(
        default=None, ge=0, description="Fewest nodes of resources.gpus GPUs of the asked type on which it fits."
    )
    memory_gib: PlanMemory | None = Field(default=None, description="Predicted peak memory per GPU.")
    fits: bool | None = Field(default=None, description="Whether it fits the GPU asked for.")
    fits_on: list[str] = Field(
        default_factory=list, max_length=16, description="Smallest way to run it per GPU type: '<n> x <gpu> <strategy>'."
    )
    predicted_seconds: float | None = Field(default=None, ge=0, description="Predicted training time.")
    predicted_gpu_hours: float | None = Field(default=None, ge=0, description="Predicted GPU-hours.")
    predicted_cost: str | None = Field(default=None, max_length=32, description="Predicted cost of the training.")
    message: str | None = Field(default=None, max_length=1024, description="The plan in one line, with its assumptions.")


class FineTuneJobStatus(StatusModel):
    """Observed state of a FineTuneJob."""

    phase: FineTuneJobPhase | None = Field(default=None, description="Where the current run is.")
    observed_generation: int | None = Field(default=None, ge=0, description="Generation the status describes.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="kstatus conditions.")
    message: str | None = Field(default=None, max_length=4096, description="One line on the current state or failure.")
    job_name: str | None = Field(default=None, max_length=253, description="The training Job of the current run.")
    run_id: str | None = Field(default=None, max_length=128, description="Run id (<uid>-<generation>[-<n>]).")
    progress: ProgressStatus | None = Field(default=None, description="Training progress.")
    dataset: DatasetStatus | None = Field(default=None, description="Dataset report summary.")
    metrics: MetricsStatus | None = Field(default=None, description="Evaluation figures.")
    adapter: AdapterStatus | None = Field(default=None, description="Latest published adapter.")
    versions: list[AdapterStatus] = Field(
        default_factory=list, max_length=100, description="Every adapter version this job published, newest last."
    )
    attempts: int | None = Field(default=None, ge=0, description="Pod attempts of the current run.")
    gpu_seconds: float | None = Field(default=None, ge=0, description="GPU-seconds used by all runs.")
    estimated_cost: str | None = Field(default=None, max_length=32, description="Estimated cost of all runs.")
    plan: PlanStatus | None = Field(default=None, description="Predicted memory, time and cost of the run.")
    start_time: datetime | None = Field(default=None, description="When the current run started.")
    completion_time: datetime | None = Field(default=None, description="When the current run finished.")
    last_schedule_time: datetime | None = Field(default=None, description="When the schedule last started a run.")
    current_run: RunStatus | None = Field(default=None, description="The run the spec asks for now.")
    finished_runs: list[FinishedRun] = Field(
        default_factory=list, max_length=100, description="Runs that ended, oldest first."
    )
    dataset_fingerprint: str | None = Field(
        default=None, max_length=128, description="Fingerprint of the dataset the last scheduled run trained on."
    )


class FineTuneJob(ApiModel):
    """Fine-tunes a chat model with LoRA: dataset check, split, augmentation, training, evaluation, publishing."""

    model_config = {"extra": "ignore"}
    kind_name: ClassVar[str] = "FineTuneJob"
    plural: ClassVar[str] = "finetunejobs"
    singular: ClassVar[str] = "finetunejob"
    short_names: ClassVar[list[str]] = ["ftj"]
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Base", "type": "string", "jsonPath": ".spec.baseModel.name"},
        {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent"},
        {"name": "Eval-Loss", "type": "number", "jsonPath": ".status.metrics.evalLoss"},
        {"name": "Adapter", "type": "string", "jsonPath": ".status.adapter.version", "priority": 1},
        {"name": "Predicted-Cost", "type": "string", "jsonPath": ".status.plan.predictedCost"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]

    api_version: Literal["loraplane.io/v1alpha1"] = "loraplane.io/v1alpha1"
    kind: Literal["FineTuneJob"] = "FineTuneJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None
