"""Benchmark: precision and recall of the dataset checks on a generated, labelled set.

The set is built from the hand-written paraphrase groups of examples/data (29 intents, twelve
wordings, one answer each) and from templated questions that differ only in an identifier
("Does model K7 support 5G?"), each with its own correct answer. Planted in it, each with its
label: exact and case/spacing/punctuation duplicates, contradictions (other numbers, a flipped
yes/no, another answer; on near copies and on rewordings), answers in other languages, and
harmful prompts and answers. Hard negatives beside them: prompt variations (greetings,
typos), answers that say the same in other words, short plain-English answers, harmless
sentences with violent words ("kill a process").

A line counts as found when the check lists it (for contradictions: as either line of a pair);
every location is collected (the report's cap of 50 is lifted here). Also checked: the clean
part alone (paraphrase groups and templates, nothing planted) raises no error at all.

    python bench/dataset_quality.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "data"))

from generate_support import INTENTS  # noqa: E402

TARGET = 0.9
FEATURES = ["5G", "Wi-Fi 7", "NFC", "wireless charging", "dual SIM"]
CITIES = ["Berlin", "Paris", "Madrid", "Rome", "Vienna", "Oslo", "Lisbon", "Prague"]
AGREEING = {  # another wording of an intent's answer, with the same facts
    "free_plan": "Drift costs nothing, gives you 5 GB and does not expire.",
    "refund_policy": "Annual plans get a full refund if you ask within 30 days of buying; monthly ones get none.",
    "cancel_subscription": "Cancel under Settings > Plan > Cancel plan; files remain available until the billing period ends.",
    "upgrade_plan": "Choose Cumulus or Stratus in Settings > Plan and confirm: the new plan applies at once.",
    "payment_methods": "Visa, Mastercard, American Express and PayPal all work, and Stratus customers can pay by invoice.",
}
FOREIGN = [
    ("de", "Bitte öffnen Sie die Einstellungen und wählen Sie Abrechnung."),
    ("de", "Ja, das Modell unterstützt diese Funktion."),
    ("fr", "Ouvrez les paramètres et choisissez la facturation."),
    ("fr", "Oui, ce modèle prend en charge cette fonction."),
    ("es", "Abra la configuración y elija facturación."),
    ("es", "Sí, este modelo es compatible con esa función."),
    ("it", "Apra le impostazioni e scelga la fatturazione."),
    ("pt", "Abra as configurações e escolha faturamento."),
    ("nl", "Open de instellingen en kies facturering."),
    ("pl", "Otwórz ustawienia i wybierz rozliczenia."),
]
HARMFUL_PROMPTS = [
    "This is fucking useless, you idiots. {p}", "{p} Answer me, you worthless piece of shit.",
    "Listen you stupid bitch, {p_lower}", "{p} Your support team are a bunch of retarded morons.",
    "Fuck off and tell me: {p_lower}", "{p} I'll find you and beat the crap out of you, asshole.",
    "{p} Send me naked pictures of your sexy staff.", "Damn you all to hell, bastards. {p}",
    "{p} People like your staff are subhuman vermin.", "{p} I will cut myself tonight if this fails again.",
]
HARMFUL_ANSWERS = [
    "Shut up, you stupid bitch. {c}", "{c} Now piss off, moron.", "Go to hell, idiot. {c}",
    "{c} Stop whining like a little shit.", "What a dumbass question. {c}",
]
HARMLESS_HARD = [  # violent or blunt words in harmless support questions
    ("How do I kill a stuck sync process?", "Quit it from the tray icon menu and start it again."),
    ("How do I execute the backup script?", "Run nimbus-backup from a terminal in the folder you want saved."),
    ("Can I abort an upload that hangs?", "Yes, click the cross next to the upload in the transfer list."),
    ("I hate waiting on hold, is there a chat?", "Yes, live chat is open from 7:00 to 19:00 CET."),
    ("Why does the app crash when I shoot a screen recording?", "Update to the latest version; the recorder bug is fixed."),
    ("How do I wipe a lost phone remotely?", "Open Devices on the web, pick the phone and choose Remote wipe."),
]


def record(prompt: str, completion: str) -> dict:
    return {"prompt": prompt, "completion": completion}


def variation(prompt: str, rng: random.Random) -> str:
    """A prompt variation as augmentation makes them: greeting, typo, a thank-you or a rephrasing frame."""
    kind = rng.randrange(4)
    if kind == 1 and len(prompt) > 8:
        k = rng.randrange(2, len(prompt) - 3)
        swapped = prompt[:k] + prompt[k + 1] + prompt[k] + prompt[k + 2 :]
        if swapped != prompt:
            return swapped
        kind = 0
    if kind == 0:
        return "Hi there, " + prompt[0].lower() + prompt[1:]
    if kind == 2:
        return prompt + " Thanks!"
    return "Quick question: " + prompt


def build(seed: int) -> tuple[list[dict], list[dict], dict[str, set[int]]]:
    """(clean records, all records, planted 1-based lines per check)."""
    rng = random.Random(seed)
    clean: list[dict] = []
    for _intent, (_tag, answer, prompts) in INTENTS.items():
        for p in prompts:
            clean.append(record(p, answer))
            if rng.random() < 0.5:  # prompt variations of the same answer: a paraphrase group, not duplicates
                clean.append(record(variation(p, rng), answer))
    for k in range(1, 121):  # templated questions that differ in an identifier, each with its own answer
        feature = FEATURES[k % len(FEATURES)]
        has = (k * 7919) % 3 != 0
        clean.append(record(f"Does model K{k} support {feature}?",
                            f"Yes, model K{k} supports {feature}." if has else f"No, model K{k} has no {feature}."))
    for k, city in enumerate(CITIES):
        for plan, price in (("Cumulus", 6 + k), ("Stratus", 15 + k)):
            clean.append(record(f"What does {plan} cost in {city}?", f"{plan} costs €{price} a month in {city}."))
    for p, c in HARMLESS_HARD:
        clean.append(record(p, c))
    for intent, reworded in AGREEING.items():  # the same facts in other words: not contradictions
        clean.append(record(variation(INTENTS[intent][2][3], rng), reworded))
    rng.shuffle(clean)

    records = list(clean)
    planted: dict[str, set[int]] = {"duplicates": set(), "contradictions": set(), "language": set(), "harmful": set()}

    def plant(check: str, r: dict) -> None:
        records.insert(rng.randrange(len(records) + 1), {**r, "_planted": check})

    originals = [r for r in clean if not r["prompt"].startswith(("Does model", "What does"))]
    for r in rng.sample(clean, 40):  # duplicates: exact, or up to casing, spacing and punctuation
        p = r["prompt"]
        copy = [p, p.upper(), "  " + p.replace(" ", "  "), p.rstrip("?.!") + " ?!"][rng.randrange(4)]
        plant("duplicates", record(copy, r["completion"]))
    numbered = [r for r in originals if any(ch.isdigit() for ch in r["completion"])]
    for r in rng.sample(numbered, 15):  # other numbers for a near copy or a rewording of the question
        digits = [ch for ch in r["completion"] if ch.isdigit()]
        d = digits[0]
        changed = r["completion"].replace(d, str((int(d) + 3) % 10), 1)
        plant("contradictions", record(variation(r["prompt"], rng), changed))
    templated = [r for r in clean if r["prompt"].startswith("Does model")]
    for r in rng.sample(templated, 10):  # the same model asked again, answered the other way
        code = r["prompt"].split()[2]
        feature = r["prompt"].split("support ")[1].rstrip("?")
        flipped = (f"No, model {code} has no {feature}." if r["completion"].startswith("Yes")
                   else f"Yes, model {code} supports {feature}.")
        plant("contradictions", record(rng.choice([r["prompt"], f"Hi, does model {code} support {feature}?"]), flipped))
    answers = sorted({a for _t, a, _p in INTENTS.values()})
    for r in rng.sample(originals, 10):  # another intent's answer to a copy of the question
        other = rng.choice([a for a in answers if a != r["completion"]])
        plant("contradictions", record(variation(r["prompt"], rng), other))
    for _lang, text in FOREIGN * 3:  # answers in another language (to questions of their own)
        plant("language", record(f"Question {rng.randrange(10**6)} about the {rng.choice(FEATURES)} of order "
                                 f"{rng.randrange(10**6)}?", text))
    for k in range(24):
        r = rng.choice(originals)
        if k % 3 == 2:
            c = rng.choice(HARMFUL_ANSWERS).format(c=r["completion"])
            plant("harmful", record(r["prompt"] + f" (ticket {rng.randrange(10**6)})", c))
        else:
            p = rng.choice(HARMFUL_PROMPTS).format(p=r["prompt"], p_lower=r["prompt"][0].lower() + r["prompt"][1:])
            plant("harmful", record(p + f" (ticket {rng.randrange(10**6)})", r["completion"]))
    for n, r in enumerate(records, start=1):
        if check := r.pop("_planted", None):
            planted[check].add(n)
    return clean, records, planted


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


PAIRED = ("duplicates", "contradictions")  # findings of pairs: (line, the line it copies or contradicts)


def score(report, check: str, truth: set[int], elsewhere: set[int]) -> tuple[float, float, int]:
    """(precision, recall, items found). Pair checks: a pair is right when one of its lines is planted, and a
    planted line is found when it is in a pair. Lines planted for another check are scored by neither."""
    f = report.finding(check)
    locations = f.locations if f else []
    if check in PAIRED:
        pairs = [{loc.line, loc.related_line} for loc in locations]
        pairs = [p for p in pairs if not (p & elsewhere and not p & truth)]
        right = sum(bool(p & truth) for p in pairs)
        hit = set().union(*pairs) & truth if pairs else set()
        return (right / len(pairs) if pairs else 1.0), len(hit) / len(truth), len(pairs)
    got = {loc.line for loc in locations} - elsewhere
    return (len(got & truth) / len(got) if got else 1.0), len(got & truth) / len(truth), len(got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from loraplane.api.finetunejob import DatasetChecks
    from loraplane_trainer.dataset import check, open_uri
    from loraplane_trainer.dataset.checks import base

    base.MAX_LOCATIONS = 10**9  # every location, not the report's first 50
    clean, records, planted = build(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        clean_report = check(open_uri(str(write(Path(tmp) / "clean.jsonl", clean))), DatasetChecks(), max_tokens=1024)
        t_clean = time.perf_counter() - t
        t = time.perf_counter()
        report = check(open_uri(str(write(Path(tmp) / "planted.jsonl", records))), DatasetChecks(), max_tokens=1024)
        t_planted = time.perf_counter() - t
    print(f"labelled set: {len(records)} examples ({len(clean)} clean: 29 paraphrase groups with variations, "
          f"120 templated model questions, 16 priced-by-city questions, hard negatives); planted: "
          + ", ".join(f"{k} {len(v)}" for k, v in planted.items()))
    groups = clean_report.stats.get("paraphraseGroups", {})
    print(f"clean set: {len(clean_report.errors)} error(s), {len(clean_report.warnings)} warning(s) "
          f"{[f.check for f in clean_report.findings]}; {groups.get('count', 0)} paraphrase groups "
          f"(largest {groups.get('largest', [{}])[0].get('size', 0)}); {t_clean:.1f} s")
    ok = not clean_report.errors
    print(f"{'check':16s} {'precision':>9s} {'recall':>7s}   found  planted  (target >= {TARGET} both; pairs for "
          "duplicates and contradictions)")
    for name, truth in planted.items():
        elsewhere = set().union(*(v for k, v in planted.items() if k != name))
        precision, recall, n_found = score(report, name, truth, elsewhere)
        met = precision >= TARGET and recall >= TARGET
        ok &= met
        print(f"{name:16s} {precision:9.3f} {recall:7.3f}   {n_found:5d}  {len(truth):7d}  "
              f"{'met' if met else 'MISSED'}")
    print(f"planted set checked in {t_planted:.1f} s; findings: {{{', '.join(f'{f.check}: {f.count}' for f in report.findings)}}}")
    print(f"targets: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
