"""The rating page's HTML, rendered on the server. It shows labels A and B only, never variant names."""

from __future__ import annotations

from html import escape

from loraplane.evaluation.session import CRITERION_QUESTIONS, Criterion, Preference

LABELS = (Preference.A.value, Preference.B.value)
PREFERENCE_TEXT = {Preference.A: "A is better", Preference.TIE: "Tie", Preference.B: "B is better"}


def _shell(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/static/rate.css">
</head><body>
{body}
<script src="/static/rate.js"></script>
</body></html>
"""


def _answer_card(label: str, answer: str, scores: dict[str, int]) -> str:
    rows = []
    for c in Criterion:
        name = f"{label}-{c.value}"
        choices = "".join(
            f'<label class="score"><input type="radio" name="{name}" value="{v}" required'
            f'{" checked" if scores.get(c.value) == v else ""}><span>{v}</span></label>'
            for v in range(1, 6))
        rows.append(f'<fieldset class="criterion" data-row="{name}"><legend>{escape(CRITERION_QUESTIONS[c])}'
                    f'</legend><div class="scores">{choices}</div></fieldset>')
    return (f'<section class="answer" aria-label="Answer {label}"><h2>Answer {label}</h2>'
            f'<div class="text">{escape(answer)}</div>{"".join(rows)}</section>')


def rating_page(*, token: str, number: int, total: int, rated: int, prompt: str, answers: tuple[str, str],
                scores: dict[str, dict[str, int]], preference: str | None, error: str | None = None) -> str:
    """Item `number` (1-based) of `total`; answers and scores are in A, B order already."""
    prefs = "".join(
        f'<label class="pref"><input type="radio" name="preference" value="{p.value}" required'
        f'{" checked" if preference == p.value else ""}><span>{PREFERENCE_TEXT[p]}</span></label>'
        for p in (Preference.A, Preference.TIE, Preference.B))
    prev_link = (f'<a class="nav" id="prev" href="/rate/{token}/{number - 1}">&larr; Previous</a>'
                 if number > 1 else '<span class="nav"></span>')
    next_link = (f'<a class="nav" id="next" href="/rate/{token}/{number + 1}">Skip &rarr;</a>'
                 if number < total else '<span class="nav"></span>')
    percent = round(100 * rated / total) if total else 100  # shown where <progress> is not drawn
    error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""<header>
<h1>Rate two answers</h1>
<div class="progress" aria-label="progress"><span id="progress-text">Item {number} of {total} &middot; {rated} rated</span>
<progress value="{rated}" max="{total}">{percent}%</progress></div>
</header>
<main>
{error_html}
<section class="prompt"><h2>Prompt</h2><div class="text">{escape(prompt)}</div></section>
<form method="post" action="/rate/{token}/{number}" id="rating">
<div class="pair">
{_answer_card(LABELS[0], answers[0], scores.get(LABELS[0], {}))}
{_answer_card(LABELS[1], answers[1], scores.get(LABELS[1], {}))}
</div>
<fieldset class="preference" data-row="preference"><legend>Which answer is better overall?</legend>{prefs}</fieldset>
<div class="actions">{prev_link}<button type="submit" id="save">Save and next</button>{next_link}</div>
</form>
<p class="keys">Keys: <kbd>1</kbd>&ndash;<kbd>5</kbd> score the highlighted row and move on,
<kbd>&uarr;</kbd> <kbd>&darr;</kbd> change row, <kbd>A</kbd> <kbd>B</kbd> <kbd>T</kbd> preference,
<kbd>Enter</kbd> save, <kbd>&larr;</kbd> <kbd>&rarr;</kbd> previous / next item.</p>
</main>"""
    return _shell(f"Rate item {number} of {total}", body)


def done_page(*, token: str, total: int, rated: int) -> str:
    missing = total - rated
    more = (f'<p>{missing} item(s) still unrated: <a href="/rate/{token}">continue</a>.</p>' if missing
            else "<p>Every item is rated. You may close this page; you can still change a rating by "
                 f'<a href="/rate/{token}/1">going back</a>.</p>')
    body = f"""<header><h1>Thank you</h1>
<div class="progress"><span id="progress-text">{rated} of {total} rated</span>
<progress value="{rated}" max="{total}"></progress></div></header>
<main>{more}</main>"""
    return _shell("Thank you", body)


def not_found_page() -> str:
    return _shell("Not found", "<main><h1>Not found</h1><p>This link is not valid.</p></main>")
