"""Ratings as a preference dataset (prompt, chosen, rejected): DPO-ready JSONL, the first step of training
from feedback. An item counts when most of its raters preferred one answer; ties and split votes are left out."""

from __future__ import annotations

import json

from .judge import JudgeResults, human_majority
from .session import Rating, Session


def preference_pairs(session: Session, ratings: list[Rating], judge: JudgeResults | None = None) -> list[dict]:
    """One {prompt, chosen, rejected, source} per item with a clear human majority (else the judge's verdict)."""
    majority = human_majority(session, ratings)
    judged = {i.item: i.preference for i in judge.items} if judge else {}
    rows = []
    for item in session.items:
        winner, source = majority.get(item.id), "raters"
        if winner in (None, "tie") and judged.get(item.id) not in (None, "tie"):
            winner, source = judged[item.id], "judge"
        if winner in (None, "tie"):
            continue
        loser = session.baseline if winner == session.candidate else session.candidate
        rows.append({"prompt": item.prompt, "chosen": item.answers[winner], "rejected": item.answers[loser],
                     "source": source, "session": session.id, "item": item.id})
    return rows


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
