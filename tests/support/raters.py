"""Three simulated raters who rate a session in a real browser, by keyboard and by mouse.

Each rater's intended judgements are written in variant names (what the test
knows); in the browser they see only A and B, so they find which answer is
which by its text, as a person would by reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import krippendorff
import numpy as np
from loraplane.evaluation.session import Criterion, Session
from statsmodels.stats.inter_rater import fleiss_kappa


@dataclass(frozen=True)
class Judgement:
    candidate: tuple[int, int, int, int]  # relevance, accuracy, tone, naturalness
    baseline: tuple[int, int, int, int]
    preference: str  # "candidate", "baseline" or "tie"


def intended(session: Session) -> dict[str, dict[str, Judgement]]:
    """rater -> item -> judgement: mostly for the candidate, with some disagreement so agreement is not trivial."""
    out: dict[str, dict[str, Judgement]] = {}
    for r_index, rater in enumerate(session.raters):
        out[rater.name] = {}
        for i_index, item in enumerate(session.items):
            k = (r_index + 2 * i_index) % 5
            cand = tuple(min(5, 3 + (k + c) % 3) for c in range(4))
            base = tuple(max(1, 2 + (k + 2 * c) % 3 - r_index % 2) for c in range(4))
            pref = "candidate" if k != 3 else ("tie" if r_index == 1 else "baseline")
            out[rater.name][item.id] = Judgement(cand, base, pref)
    return out


def expected_results(session: Session, plan: dict[str, dict[str, Judgement]]) -> dict:
    """The statistics computed straight from the plan, independently of loraplane.evaluation.results."""
    raters = [r.name for r in session.raters]
    items = [i.id for i in session.items]
    prefs = [plan[r][i].preference for r in raters for i in items]
    wins, losses, ties = prefs.count("candidate"), prefs.count("baseline"), prefs.count("tie")
    alphas = {}
    for n, c in enumerate(Criterion):
        matrix = np.array([[v for i in items for v in (plan[r][i].candidate[n], plan[r][i].baseline[n])]
                           for r in raters], dtype=float)
        alphas[c.value] = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    table = [[sum(plan[r][i].preference == p for r in raters) for p in ("candidate", "baseline", "tie")]
             for i in items]
    means = {c.value: float(np.mean([plan[r][i].candidate[n] for r in raters for i in items]))
             for n, c in enumerate(Criterion)}
    return {"wins": wins, "losses": losses, "ties": ties, "winRate": (wins + ties / 2) / len(prefs),
            "alpha": alphas, "kappa": fleiss_kappa(table, method="fleiss"), "candidateMeans": means}


def rate_in_browser(driver, base_url: str, session: Session, rater_name: str, plan: dict[str, dict[str, Judgement]],
                    *, keyboard: bool, seen: list[str]) -> None:
    """Open the rater's link and rate every item; `seen` collects every page source and network event."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    rater = next(r for r in session.raters if r.name == rater_name)
    by_text = {item.id: item for item in session.items}
    driver.get(f"{base_url}/rate/{rater.token}")
    for _ in range(len(session.items)):
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "rating"))
        seen.append(driver.page_source)
        prompt = driver.find_element(By.CSS_SELECTOR, ".prompt .text").text
        item = next(i for i in by_text.values() if i.prompt == prompt)
        a_text = driver.find_element(By.CSS_SELECTOR, 'section[aria-label="Answer A"] .text').text
        a_is_candidate = a_text == item.answers[session.candidate]
        j = plan[rater_name][item.id]
        shown = (j.candidate, j.baseline) if a_is_candidate else (j.baseline, j.candidate)
        pref = {"tie": "tie", "candidate": "A" if a_is_candidate else "B",
                "baseline": "B" if a_is_candidate else "A"}[j.preference]
        before = driver.current_url
        if keyboard:
            body = driver.find_element(By.TAG_NAME, "body")
            keys = [str(s) for scores in shown for s in scores] + [pref[0].lower()]
            body.send_keys(*keys)
            body.send_keys(Keys.ENTER)
        else:
            for label, scores in zip("AB", shown, strict=True):
                for c, s in zip(Criterion, scores, strict=True):
                    driver.find_element(By.CSS_SELECTOR, f'input[name="{label}-{c.value}"][value="{s}"] + span').click()
            driver.find_element(By.CSS_SELECTOR, f'input[name="preference"][value="{pref}"] + span').click()
            driver.find_element(By.ID, "save").click()
        WebDriverWait(driver, 10).until(lambda d, b=before: d.current_url != b)
    seen.append(driver.page_source)
    assert "/done" in driver.current_url, driver.current_url
    seen.extend(json.dumps(entry) for entry in driver.get_log("performance"))
