"""The rating server: one session directory, one token link per rater, ratings appended to ratings.jsonl.

Blindness: a rater's pages, redirects and headers carry labels A/B, the item
number and their own token only. The A/B order is a keyed hash of rater and
item (`loraplane.evaluation.blinding`), mapped back to variant names here,
server-side, before a rating is stored.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from loraplane.evaluation.blinding import order, unblind
from loraplane.evaluation.session import (
    Criterion,
    Preference,
    Rater,
    Rating,
    Session,
    append_rating,
    read_ratings,
    read_session,
)

from .page import LABELS, done_page, not_found_page, rating_page

STATIC = Path(__file__).parent / "static"
# The token is in the URL: no caching, no referrer to other sites, no indexing, nothing from elsewhere.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
}


class FormError(ValueError):
    """A rating form with a missing or bad field; the message names it."""


def parse_form(form: dict[str, str]) -> tuple[dict[str, dict[str, int]], str]:
    """Scores by label and criterion, and the preference label, from the posted form."""
    scores: dict[str, dict[str, int]] = {}
    for label in LABELS:
        scores[label] = {}
        for c in Criterion:
            raw = form.get(f"{label}-{c.value}", "")
            if raw not in {"1", "2", "3", "4", "5"}:
                raise FormError(f"answer {label}: rate '{c.value}' from 1 to 5")
            scores[label][c.value] = int(raw)
    pref = form.get("preference", "")
    if pref not in {p.value for p in Preference}:
        raise FormError("say which answer is better overall (A, B or tie)")
    return scores, pref


class RatingServer:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.session: Session = read_session(self.directory)
        self.ratings: dict[tuple[str, str], Rating] = {(r.rater, r.item): r for r in read_ratings(self.directory)}
        self._lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/rate/{token}", self.start)
        app.router.add_get("/rate/{token}/done", self.done)
        app.router.add_get("/rate/{token}/{number:[0-9]+}", self.show)
        app.router.add_post("/rate/{token}/{number:[0-9]+}", self.save)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(HEADERS)
            raise
        response.headers.update(HEADERS)
        return response

    def _rater(self, request: web.Request) -> Rater:
        rater = self.session.rater_by_token(request.match_info["token"])
        if rater is None:
            raise web.HTTPNotFound(text=not_found_page(), content_type="text/html")
        return rater

    def _rated(self, rater: Rater) -> int:
        return sum((rater.name, i.id) in self.ratings for i in self.session.items)

    def _next_unrated(self, rater: Rater, after: int = 0) -> int | None:
        items = self.session.items
        for n in list(range(after, len(items))) + list(range(0, after)):
            if (rater.name, items[n].id) not in self.ratings:
                return n + 1
        return None

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {"rate.css", "rate.js"}:
            raise web.HTTPNotFound()
        kind = "text/css" if name.endswith(".css") else "application/javascript"
        return web.Response(body=(STATIC / name).read_bytes(), content_type=kind, charset="utf-8")

    async def start(self, request: web.Request) -> web.Response:
        rater = self._rater(request)
        token = request.match_info["token"]
        n = self._next_unrated(rater)
        raise web.HTTPSeeOther(f"/rate/{token}/{n}" if n else f"/rate/{token}/done")

    async def done(self, request: web.Request) -> web.Response:
        rater = self._rater(request)
        html = done_page(token=request.match_info["token"], total=len(self.session.items), rated=self._rated(rater))
        return web.Response(text=html, content_type="text/html")

    def _page(self, rater: Rater, token: str, number: int, error: str | None = None,
              posted: tuple[dict, str] | None = None) -> str:
        item = self.session.items[number - 1]
        shown = order(self.session, rater.name, item.id)
        scores: dict[str, dict[str, int]] = {}
        preference = None
        previous = self.ratings.get((rater.name, item.id))
        if posted is not None:
            scores, preference = posted
        elif previous is not None:
            scores = {label: {c.value: previous.scores[v][c] for c in Criterion} for label, v in zip(LABELS, shown, strict=True)}
            preference = next((lab for lab, v in zip(LABELS, shown, strict=True) if v == previous.preference), "tie")
        return rating_page(token=token, number=number, total=len(self.session.items), rated=self._rated(rater),
                           prompt=item.prompt, answers=(item.answers[shown[0]], item.answers[shown[1]]),
                           scores=scores, preference=preference, error=error)

    def _number(self, request: web.Request) -> int:
        number = int(request.match_info["number"])
        if not 1 <= number <= len(self.session.items):
            raise web.HTTPNotFound(text=not_found_page(), content_type="text/html")
        return number

    async def show(self, request: web.Request) -> web.Response:
        rater = self._rater(request)
        number = self._number(request)
        return web.Response(text=self._page(rater, request.match_info["token"], number), content_type="text/html")

    async def save(self, request: web.Request) -> web.Response:
        rater = self._rater(request)
        number = self._number(request)
        token = request.match_info["token"]
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        try:
            scores, pref = parse_form(form)
        except FormError as exc:
            partial = {lab: {c.value: int(form[f"{lab}-{c.value}"]) for c in Criterion
                             if form.get(f"{lab}-{c.value}", "") in {"1", "2", "3", "4", "5"}} for lab in LABELS}
            html = self._page(rater, token, number, str(exc), (partial, form.get("preference")))
            return web.Response(status=400, text=html, content_type="text/html")
        item = self.session.items[number - 1]
        shown = order(self.session, rater.name, item.id)
        rating = Rating(
            rater=rater.name, item=item.id, at=datetime.now(UTC),
            scores={v: {Criterion(c): s for c, s in scores[label].items()} for label, v in zip(LABELS, shown, strict=True)},
            preference=unblind(self.session, rater.name, item.id, pref))
        async with self._lock:
            append_rating(self.directory, rating)
            self.ratings[(rater.name, item.id)] = rating
        n = self._next_unrated(rater, number)
        raise web.HTTPSeeOther(f"/rate/{token}/{n}" if n else f"/rate/{token}/done")
