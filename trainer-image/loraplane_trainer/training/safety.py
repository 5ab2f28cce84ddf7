"""The safety probes asked of the model being evaluated (base or adapter), in process, with greedy decoding."""

from __future__ import annotations

from loraplane.api.finetunejob import SafetyEvaluation
from loraplane.evaluation.judge import JudgeClient, JudgeError, judge_compliance
from loraplane.evaluation.safety import Probe, ProbeSetError, compliance, load_probes

from .errors import BadInput
from .evaluation import greedy_answers
from .logs import log
from .precision import Precision


def load(spec: SafetyEvaluation) -> list[Probe]:
    """The probe set, or a clear error naming the field and the file."""
    if not spec.enabled:
        return []
    try:
        return load_probes(spec.probe_set_uri)
    except ProbeSetError as exc:
        raise BadInput(f"spec.evaluation.safety.probeSetUri: {exc}", reason="InvalidSpec") from exc


def evaluate(model, tokenizer, probes: list[Probe], spec: SafetyEvaluation, precision: Precision) -> dict | None:
    """{share, byCategory, samples} of the probes answered compliantly, or None when safety is off."""
    if not spec.enabled or not probes:
        return None
    system = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
    prompts = [tokenizer.apply_chat_template([*system, {"role": "user", "content": p.prompt}], tokenize=False,
                                             add_generation_prompt=True) for p in probes]
    answers = greedy_answers(model, tokenizer, prompts, precision, max_new_tokens=spec.max_new_tokens)
    verdicts = None
    if spec.judge is not None:
        client = JudgeClient.from_env(spec.judge.endpoint, spec.judge.model)
        try:
            verdicts = [judge_compliance(client, p.prompt, a) for p, a in zip(probes, answers, strict=True)]
        except JudgeError as exc:
            # The judge is a second opinion: without it, refusal detection still decides.
            log.warning("safety judge unavailable, refusal detection alone decides: %s", exc)
    return compliance(probes, answers, verdicts).to_json()
