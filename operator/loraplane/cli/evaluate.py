"""`loraplane eval ...`: blind human evaluation sessions, their results, an LLM judge and preference export.

The answers come through the serving path (the router in front of vLLM), the
rating page runs as its own process (`python -m loraplane_server.evaluation`),
the statistics are computed here from the session directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx

from ..evaluation.attached import attach, from_results
from ..evaluation.judge import JudgeClient, JudgeError, JudgeResults, judge_session
from ..evaluation.preferences import preference_pairs, to_jsonl
from ..evaluation.prompts import PromptSourceError, items_from, probe_prompts, read_prompt_file, sample
from ..evaluation.results import MIN_RATERS, human_gate, markdown, ratings_csv, summarize
from ..evaluation.safety import ProbeSetError
from ..evaluation.session import new_session, read_ratings, read_session, write_session
from ..evaluation.traffic import SamplesError, TrafficSample, feedback_pairs, read_samples, samples_token
from .processes import python_module

JUDGE_FILE = "judge.json"


def ask(endpoint: str, model: str | None, variant: str, prompt: str, max_tokens: int, system: str | None,
        api_key: str | None = None) -> str:
    """One greedy answer of `variant` through the router; the router must say it served that variant.

    With the served name the pin is `<model>:<variant>` (any pool); without, the bare variant (a private pool)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.post(f"{endpoint.rstrip('/')}/chat/completions", timeout=300, headers=headers, json={
            "model": f"{model}:{variant}" if model else variant, "messages": messages, "temperature": 0,
            "max_tokens": max_tokens})
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
    if r.status_code != 200:
        raise click.ClickException(f"{endpoint}: variant {variant} of {model or 'the chatbot'}: HTTP {r.status_code}: {r.text[:300]}")
    served = r.headers.get("x-loraplane-variant")
    if served is not None and served != variant:
        raise click.ClickException(f"{endpoint}: asked for variant {variant}, the router served {served}")
    return r.json()["choices"][0]["message"]["content"].strip()


def _session_dir(path: Path):
    try:
        return read_session(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("eval")
def eval_group() -> None:
    """Blind side-by-side evaluation by people (and an LLM judge), and the human gate."""


@eval_group.command("create")
@click.option("--endpoint", required=True, help="The chatbot's OpenAI-compatible endpoint (the router), e.g. "
              "http://support-bot-router:8000/v1.")
@click.option("--model", default=None, help="The chatbot's served name: variants are pinned as <model>:<variant> "
              "(needed on a shared ModelPool); unset, as the bare variant name (a private pool).")
@click.option("--api-key", envvar="LORAPLANE_API_KEY", default=None,
              help="The chatbot's API key (spec.auth.apiKeySecretRef), when it has one.")
@click.option("--candidate", required=True, help="Variant on trial (the tuned adapter or the canary).")
@click.option("--baseline", required=True, help="Variant it must beat ('base' for the bare base model, or the stable).")
@click.option("--prompts", "prompt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL of prompts: {prompt, completion} or chat {messages} (e.g. the validation split).")
@click.option("--probes", "probe_uri", default=None, help="Use a probe set (URI, or 'default' for the shipped one).")
@click.option("--items", "n_items", type=int, default=20, show_default=True, help="How many prompts to sample.")
@click.option("--raters", required=True, help="Comma-separated rater names (three or more for agreement).")
@click.option("--max-tokens", type=int, default=128, show_default=True)
@click.option("--system-prompt", default=None, help="System prompt the chatbot serves with.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def create(endpoint, model, api_key, candidate, baseline, prompt_file, probe_uri, n_items, raters, max_tokens, system_prompt,
           seed, out_dir) -> None:
    """Answer sampled prompts with both variants through the router and write a rating session."""
    if (prompt_file is None) == (probe_uri is None):
        raise click.UsageError("give exactly one of --prompts or --probes")
    names = [r.strip() for r in raters.split(",") if r.strip()]
    if len(names) < MIN_RATERS:
        click.echo(f"note: {len(names)} raters; agreement and the human gate need {MIN_RATERS} or more", err=True)
    try:
        if prompt_file is not None:
            prompts, source = read_prompt_file(prompt_file), f"file {prompt_file}"
        else:
            uri = None if probe_uri == "default" else probe_uri
            prompts, source = probe_prompts(uri), f"probes {uri or 'shipped set'}"
    except (PromptSourceError, ProbeSetError) as exc:
        raise click.ClickException(str(exc)) from exc
    chosen = sample(prompts, n_items, seed)
    answers = {v: [] for v in (candidate, baseline)}
    with click.progressbar(chosen, label=f"asking {candidate} and {baseline}") as bar:
        for prompt, _ in bar:
            for v in answers:
                answers[v].append(ask(endpoint, model, v, prompt, max_tokens, system_prompt, api_key))
    try:
        session = new_session(candidate=candidate, baseline=baseline, source=source,
                              items=items_from(chosen, answers), raters=names)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    write_session(out_dir, session)
    click.echo(f"session {session.id}: {len(chosen)} prompts in {out_dir}")
    _print_links(session, "http://127.0.0.1:8080")


def _print_links(session, base_url: str) -> None:
    for r in session.raters:
        click.echo(f"  {r.name}: {base_url.rstrip('/')}/rate/{r.token}")


@eval_group.command("links")
@click.option("--session", "session_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True, help="Where the page is served.")
def links(session_dir: Path, base_url: str) -> None:
    """Each rater's link (send each person their own: the token is who they are)."""
    _print_links(_session_dir(session_dir), base_url)


@eval_group.command("serve")
@click.option("--session", "session_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(session_dir: Path, host: str, port: int) -> None:
    """Serve the rating page (Ctrl-C stops it)."""
    session = _session_dir(session_dir)
    _print_links(session, f"http://{host}:{port}")
    raise SystemExit(python_module("loraplane_server.evaluation",
                                   ["--session", str(session_dir), "--host", host, "--port", str(port)]))


def _judge_results(session_dir: Path) -> JudgeResults | None:
    path = session_dir / JUDGE_FILE
    return JudgeResults.model_validate_json(path.read_text()) if path.exists() else None


@eval_group.command("results")
@click.option("--session", "session_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write results as JSON.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the ratings as CSV.")
@click.option("--card", "card_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the model card's 'Human evaluation' section (Markdown).")
@click.option("--min-win-rate", type=float, default=None,
              help="The human gate (minHumanWinRate): exit 1 unless enough ratings exist and the candidate wins.")
@click.option("--min-raters", type=int, default=MIN_RATERS, show_default=True)
@click.option("--attach", "adapter_uri", default=None,
              help="Store the outcome beside the candidate's adapter (human-evaluation.json), where a canary's "
              "analysis with minHumanWinRate reads it.")
def results(session_dir, json_out, csv_out, card_out, min_win_rate, min_raters, adapter_uri) -> None:
    """Means with confidence intervals, win rate, agreement; the human gate."""
    session = _session_dir(session_dir)
    ratings = read_ratings(session_dir)
    res = summarize(session, ratings)
    gate = human_gate(res, min_win_rate, min_raters) if min_win_rate is not None else None
    judge = _judge_results(session_dir)
    text = markdown(res, gate)
    if judge is not None:
        text += _judge_markdown(judge)
    click.echo(text)
    if json_out:
        body = {"results": res.model_dump(mode="json"), "gate": None if gate is None else {
            "minHumanWinRate": min_win_rate, "passed": not gate, "failed": gate},
            "judge": judge.model_dump(mode="json") if judge else None}
        json_out.write_text(json.dumps(body, indent=2) + "\n")
    if csv_out:
        csv_out.write_text(ratings_csv(session, ratings))
    if card_out:
        card_out.write_text(text)
    if adapter_uri:
        click.echo(f"attached: {attach(adapter_uri, from_results(res, min_raters), card_section=text)}")
    if gate:
        raise SystemExit(1)


def _judge_markdown(j: JudgeResults) -> str:
    def num(v):
        return "n/a" if v is None else f"{v:.3f}"

    return (f"\n## LLM judge\n\n`{j.model}` at {j.endpoint}, pairwise in both orders: candidate win rate "
            f"{num(j.win_rate)}, both orders agreed on {num(j.position_consistency)} of items, {j.unusable} "
            f"item(s) without a usable verdict. Agreement with the raters' majority: {num(j.human_agreement)} "
            f"(Cohen's kappa {num(j.human_kappa)}, {j.compared_items} items).\n")


@eval_group.command("judge")
@click.option("--session", "session_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--endpoint", required=True, help="OpenAI-compatible base URL of the judge, e.g. http://llm/v1.")
@click.option("--model", required=True, help="The judge's model name.")
def judge(session_dir: Path, endpoint: str, model: str) -> None:
    """Judge the session's pairs (both orders) with a model; report its agreement with the raters.

    The API key, if any, is read from LORAPLANE_JUDGE_API_KEY.
    """
    session = _session_dir(session_dir)
    try:
        res = judge_session(session, JudgeClient.from_env(endpoint, model), read_ratings(session_dir))
    except JudgeError as exc:
        raise click.ClickException(str(exc)) from exc
    (session_dir / JUDGE_FILE).write_text(res.model_dump_json(indent=2))
    click.echo(_judge_markdown(res).strip())


@eval_group.command("preferences")
@click.option("--session", "session_dirs", multiple=True,
              type=click.Path(file_okay=False, path_type=Path), help="Session directory (repeatable).")
@click.option("--samples", "sample_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Traffic samples with feedback (`loraplane eval samples`; repeatable).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
def preferences(session_dirs, sample_files, out_file: Path) -> None:
    """Export ratings (judge verdicts where raters split) and live feedback as DPO-ready JSONL: prompt, chosen,
    rejected."""
    if not session_dirs and not sample_files:
        raise click.UsageError("give --session or --samples (or both)")
    rows = []
    for d in session_dirs:
        rows += preference_pairs(_session_dir(d), read_ratings(d), _judge_results(d))
    samples = []
    for f in sample_files:
        try:
            samples += read_samples(f)
        except SamplesError as exc:
            raise click.ClickException(str(exc)) from exc
    from_feedback = feedback_pairs(samples)
    out_file.write_text(to_jsonl(rows + from_feedback))
    click.echo(f"{len(rows) + len(from_feedback)} preference pairs ({len(from_feedback)} from feedback) -> {out_file}")


def fetch_samples(endpoint: str, chatbot: str, token: str) -> tuple[list[TrafficSample], dict[str, float]]:
    """One router replica's samples of `chatbot` (`<namespace>.<name>`) and its feedback log."""
    url = endpoint.rstrip("/")
    url = url[: -len("/v1")] if url.endswith("/v1") else url
    try:
        r = httpx.get(f"{url}/v1/samples", params={"chatbot": chatbot}, timeout=60,
                      headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
    if r.status_code != 200:
        raise click.ClickException(f"{endpoint}: HTTP {r.status_code}: {r.text[:300]}")
    body = r.json()
    return ([TrafficSample.model_validate(s) for s in body.get("samples") or []],
            {f["requestId"]: f["score"] for f in body.get("feedback") or []})


@eval_group.command("samples")
@click.option("--endpoint", "endpoints", required=True, multiple=True,
              help="A router replica's admin port, e.g. http://10.0.3.7:9090 (repeat for every replica: each "
                   "keeps its own).")
@click.option("--chatbot", required=True, help="The chatbot (its ChatbotDeployment's name).")
@click.option("--namespace", default="default", show_default=True, help="The ChatbotDeployment's namespace.")
@click.option("--key-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The pool's router request-id signing key (the request-id-key of its router's keys Secret).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
def samples(endpoints, chatbot: str, namespace: str, key_file: Path, out_file: Path) -> None:
    """Export the prompts and answers the routers sampled (spec.sampling), with feedback joined across replicas.

    The file is JSONL of chat `messages` (the answer last): `eval create --prompts` draws prompts from it and
    `eval preferences --samples` turns its feedback into preference pairs."""
    key = f"{namespace}.{chatbot}"  # the chatbot's routing table key
    token = samples_token(key_file.read_bytes().strip(), key)
    found: dict[str, TrafficSample] = {}
    scores: dict[str, float] = {}
    for e in endpoints:
        got, log = fetch_samples(e, key, token)
        found.update({s.request_id: s for s in got})
        scores.update(log)
    rows = sorted(found.values(), key=lambda s: s.at)
    for s in rows:
        if s.request_id in scores:
            s.feedback = scores[s.request_id]
    out_file.write_text("".join(s.to_json_line() for s in rows))
    rated = sum(s.feedback is not None for s in rows)
    click.echo(f"{len(rows)} samples of {key} ({rated} with feedback) from {len(endpoints)} router(s) -> {out_file}")


commands = [eval_group]
