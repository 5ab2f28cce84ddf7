"""The meaning-aware checks on hand-made hard cases: identifiers that make questions different,
prompt variations that are paraphrases (not duplicates), answers that agree in other words, short
plain-English answers, intents from prompt meaning, harmful content, and reports that show their evidence."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from loraplane.api.finetunejob import DatasetChecks
from loraplane_trainer.dataset import check, open_uri
from loraplane_trainer.dataset.meaning.embeddings import embedder
from loraplane_trainer.dataset.meaning.identifiers import differ, identifiers, words
from loraplane_trainer.dataset.meaning.language import languages
from rich.console import Console

FILLER = [  # unrelated questions so that sets are not all one topic
    ("Can I pay with PayPal?", "Yes, PayPal and all major cards are accepted."),
    ("Which operating systems are supported?", "Windows 11, macOS 14 and Ubuntu 22.04 or later."),
    ("How do I change my e-mail address?", "Open Settings > Account and edit the address field."),
    ("Where can I download my invoices?", "Invoices are under Settings > Billing > History."),
    ("How long are deleted files kept?", "Deleted files stay in the bin for 30 days."),
    ("Is there a mobile app?", "There are apps for iOS and Android."),
]


def write(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(tmp_path: Path, records: list[dict], **checks):
    return check(open_uri(str(write(tmp_path, records))), DatasetChecks(min_examples=1, **checks), max_tokens=1024)


def filler() -> list[dict]:
    return [{"prompt": p, "completion": c} for p, c in FILLER]


def test_identifiers_make_templated_questions_different():
    a, b = "Does model K1 support 5G?", "Does model K2 support 5G?"
    assert identifiers(a) == {"k1", "5g"}
    assert differ(identifiers(a), words(a), identifiers(b), words(b))
    c = "does model k1 support 5g"  # the same question lower-cased
    assert not differ(identifiers(a), words(a), identifiers(c), words(c))
    d, e = "When does Anna's shift start?", "When does Bob's shift start?"
    assert differ(identifiers(d), words(d), identifiers(e), words(e))
    assert identifiers("What is the refund policy?") == frozenset()


def test_templated_prompts_are_not_contradictions_but_the_one_real_one_is_named(tmp_path):
    records = filler()
    for k in range(1, 41):
        records.append({"prompt": f"Does model K{k} support 5G?",
                        "completion": "Yes, it supports 5G." if k % 2 else "No, it has no 5G modem."})
    records.append({"prompt": "Does the model K7 support 5G?", "completion": "No, it has no 5G modem."})
    report = run(tmp_path, records)
    found = report.finding("contradictions")
    assert found is not None and found.count == 1, found and [loc.detail for loc in found.locations]
    loc = found.locations[0]
    k7 = len(FILLER) + 7
    assert {loc.line, loc.related_line} == {k7, len(records)}
    assert "yes" in loc.detail and "no" in loc.detail and loc.similarity >= 0.85
    assert report.finding("duplicates") is None


def test_answers_that_agree_in_other_words_are_not_contradictions(tmp_path):
    records = filler() + [
        {"prompt": "How long does shipping take?", "completion": "Orders ship within three business days."},
        {"prompt": "How long does delivery take?", "completion": "We dispatch every order in at most three working days."},
        {"prompt": "Can I cancel at any time?", "completion": "Yes, you can cancel whenever you like."},
        {"prompt": "Can I cancel anytime?", "completion": "Sure, cancelling is possible at any moment."},
    ]
    assert run(tmp_path, records).finding("contradictions") is None
    records.append({"prompt": "Can I cancel at any time?!", "completion": "No, plans run for a full year."})
    found = run(tmp_path, records).finding("contradictions")
    assert found is not None and all(loc.line == len(records) for loc in found.locations)
    assert found.locations == sorted(found.locations, key=lambda loc: -loc.score)


def test_prompt_variations_are_a_paraphrase_group_never_an_error_by_default(tmp_path):
    answer = "Support is open 7:00 to 19:00 CET, Monday to Friday."
    variations = ["When is support open?", "Hi team, when is support open?", "when is suport open",
                  "Quick question: when is support open?", "What are your opening hours?",
                  "At what time can I reach an agent?", "Hello! When can I talk to support?"]
    records = filler() + [{"prompt": p, "completion": answer} for p in variations]
    report = run(tmp_path, records)
    assert not report.has_errors and report.finding("duplicates") is None
    groups = report.stats["paraphraseGroups"]
    assert groups["count"] == 1 and groups["largest"][0]["size"] == len(variations)
    capped = run(tmp_path, records, max_paraphrase_group_share=0.3)
    assert capped.finding("paraphrase-groups").severity == "error"


def test_language_of_short_plain_english_answers_and_of_one_german_answer(tmp_path):
    short = ["Yes, it does.", "Use the link on the sign-in page.", "Go to Settings and choose Billing.",
             "Sure, see our plans page.", "Orders ship in three days.", "It costs nine dollars a month."]
    assert set(languages(short)) <= {"en", None} and languages(short).count("en") >= 5
    records = [{"prompt": f"Question number {k} about topic {k * 7}?", "completion": c}
               for k, c in enumerate(short * 3)]
    assert run(tmp_path, records).finding("language") is None
    records[4]["completion"] = "Bitte öffnen Sie die Einstellungen und wählen Sie Abrechnung."
    found = run(tmp_path, records).finding("language")
    assert found is not None and found.lines == [5] and found.locations[0].detail == "de"


def test_harmful_content_is_flagged_without_echoing_it(tmp_path):
    records = filler() + [
        {"prompt": "How do I kill a stuck sync process?", "completion": "Quit it from the tray icon menu."},
        {"prompt": "You are useless fucking idiots, where is my refund?", "completion": "Refunds take 5 days."},
    ]
    found = run(tmp_path, records).finding("harmful")
    assert found is not None and found.lines == [len(records)] and found.severity == "warning"
    assert "fucking" not in json.dumps(found.to_dict()) and "prompt scored" in found.locations[0].detail
    assert run(tmp_path, records, harmful="error").has_errors
    assert run(tmp_path, records, harmful="off").finding("harmful") is None


def test_harm_without_bad_words_is_found_by_meaning_and_harmless_lookalikes_are_not():
    from loraplane_trainer.dataset.meaning.harmful import harmful_scores
    from profanity_check import predict_prob

    harmful = {  # none of these is in the probe's seed sentences
        "self-harm": "Lately I think about ending it all and taking my own life.",
        "hate": "Everyone from that country is a cockroach that should be exterminated.",
        "sexual": "Please could you email me some explicit nude pictures of your colleagues?",
        "weapons": "What do I need to assemble an explosive device in my garage?",
    }
    harmless = ["How do I kill the background task that hangs?", "Please send me the slides from the webinar.",
                "Lately I think about switching to the yearly plan.", "Which countries do you ship to?"]
    texts = list(harmful.values()) + harmless
    assert (np.asarray(predict_prob(list(harmful.values()))) < 0.7).sum() >= 3  # what profanity alone misses
    scored = harmful_scores(texts, "sentence-transformers/all-MiniLM-L6-v2")
    assert (scored.scores[: len(harmful)] >= 0.7).all() and (scored.scores[len(harmful) :] < 0.7).all()
    assert scored.categories[: len(harmful)] == list(harmful)
    without = harmful_scores(texts)  # no embedding model: profanity alone
    assert (without.scores[: len(harmful)] < 0.7).sum() >= 3 and set(without.categories) == {"profanity"}


def test_languages_past_the_precise_bound_keep_the_fast_answer(monkeypatch):
    from loraplane_trainer.dataset.meaning import language

    texts = ["Open the settings page and choose billing to see your invoices."] * 1 + [
        "Bitte öffnen Sie die Einstellungen.", "Ouvrez les paramètres, s'il vous plaît."]
    full = language.identify(texts, [50, 1, 1])
    assert full.codes == ["en", "de", "fr"] and full.unverified == 0
    monkeypatch.setattr(language, "MAX_PRECISE", 1)
    bounded = language.identify(texts, [50, 1, 1])
    assert bounded.unverified == 1 and bounded.codes[0] == "en"


def test_intents_are_clusters_of_prompt_meaning_with_a_representative(tmp_path):
    records = []
    for k in range(30):
        records.append({"prompt": ["How do I reset my password?", "I forgot my password, how do I reset it?",
                                   "Password reset: how does it work?"][k % 3], "completion": f"Reset note {k}."})
    for p, c in FILLER:
        records.append({"prompt": p, "completion": c})
        records.append({"prompt": p.replace("?", " please?"), "completion": c})
    report = run(tmp_path, records)
    intents = report.stats["intents"]
    assert intents["source"] == "inferred (clusters of prompt meaning)"
    dominant = report.finding("skew-dominant")
    assert dominant is not None and "password" in dominant.message.lower()


def test_each_malformed_line_keeps_its_own_reason_and_tables_wrap(tmp_path):
    path = tmp_path / "d.jsonl"
    good = "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in FILLER)
    path.write_text(good + '{"prompt": "broken\n' + json.dumps({"prompt": "", "completion": "x"}) + "\n")
    report = check(open_uri(str(path)), DatasetChecks(min_examples=1))
    bad = report.finding("malformed")
    assert bad.count == 2 and bad.lines == [7, 8]
    assert "invalid JSON" in bad.locations[0].detail and "'prompt' is empty" in bad.locations[1].detail
    out = io.StringIO()
    report.render(Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert "…" not in text and "invalid JSON" in text and "is empty" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    shown = json.loads(json.dumps(report.to_dict()))
    assert shown["checks"][0]["locations"][1]["detail"].endswith("is empty")


@pytest.mark.parametrize("pair, close", [
    (("How do I reset my password?", "I forgot my password, what should I do?"), True),
    (("How do I reset my password?", "Where can I download my invoices?"), False),
])
def test_the_embedding_model_loads_offline_and_measures_meaning(pair, close):
    vec = embedder().encode(list(pair))
    assert vec.shape == (2, 384) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-3)
    assert (float(vec[0] @ vec[1]) > 0.6) == close
    static = embedder().static(list(pair))
    assert static.shape[0] == 2


def test_without_the_model_libraries_the_checks_fall_back_to_surface_comparison(monkeypatch):
    # The fine-tuning API image checks uploads without torch, lingua or the classifier.
    from loraplane_trainer.dataset import meaning

    real = meaning.find_spec
    monkeypatch.setattr(meaning, "find_spec", lambda name: None if name in (
        "torch", "sentence_transformers", "lingua", "profanity_check") else real(name))
    data = Path(__file__).resolve().parents[2] / "examples" / "data"
    report = check(open_uri(str(data / "bad" / "contradictions.jsonl")), DatasetChecks(), max_tokens=1024)
    found = report.finding("contradictions")
    added = json.loads((data / "bad" / "expected.json").read_text())["contradictions.jsonl"]["at"]
    assert found is not None and sorted(found.lines) == added
    assert "surface comparison only" in report.stats["meaning"]["skipped"]
    harmful = check(open_uri(str(data / "bad" / "harmful.jsonl")), DatasetChecks(), max_tokens=1024)
    assert harmful.finding("harmful") is None and "not installed" in harmful.stats["harmful"]["skipped"]


def test_cell_search_past_the_exact_size_finds_the_close_neighbours(monkeypatch):
    """Past EXACT distinct vectors the neighbour search is approximate (k-means cells): it must still find the
    pairs a decision depends on, the close ones, as the exact search does."""
    from loraplane_trainer.dataset.meaning import neighbours

    rng = np.random.default_rng(3)
    centres = rng.standard_normal((400, 32)).astype(np.float32)
    vectors = np.repeat(centres, 5, axis=0) + 0.25 * rng.standard_normal((2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = neighbours.neighbour_pairs(vectors, 10, 0.75)
    monkeypatch.setattr(neighbours, "EXACT", 100)
    cells = neighbours.neighbour_pairs(vectors, 10, 0.75)
    want = set(zip(exact[0].tolist(), exact[1].tolist(), strict=True))
    got = set(zip(cells[0].tolist(), cells[1].tolist(), strict=True))
    assert len(want) > 3000  # the five copies of each centre are each other's neighbours
    assert len(want & got) / len(want) >= 0.99  # one probe per vector finds 0.97
