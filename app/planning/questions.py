"""Clarifying questions (issue 17): when the model judges an issue too ambiguous to specify, the
requirements stage posts up to five numbered questions instead, and the spec waits in state
`questions` ("waiting for answers"). The next comment of a person with write access is the answer
(app/events/comments.py) and continues planning, as does `/omoi plan` (without answers). One round
of questions per spec unless a person asks for another (`/omoi plan --ask`); after that the model
must write the requirements. Answers are kept as people wrote them and sanitised when they go into
the prompt (app/planning/drafting.py)."""
from __future__ import annotations

from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.github import comments
from app.observability.logs import get_logger
from app.text import markers
from app.text.rendering import render

log = get_logger("omoi.spec.questions")
STATE = "questions"  # the spec's state while it waits for answers
MARKER_STAGE = "questions"  # the questions comment: the spec marker with this stage
MAX_ANSWERS = 5  # answer comments kept per round (the first one continues planning)


def may_ask(planning: dict) -> bool:
    """May the requirements call ask questions now? Not on the quick path, not after a round."""
    return not planning.get("quick") and planning.get("rounds", 0) < planning.get("rounds_allowed", 1)


def _update(spec: Spec, **changes) -> dict:
    planning = dict(spec.planning or {}) | changes
    spec.planning = planning  # a new dict: the JSON column sees the change
    return planning


async def post(gh, settings: Settings, spec_id: int, questions: list[str]) -> None:
    """Store this round's questions, put the spec in `questions`, post (or edit) the questions comment."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        planning = _update(spec, questions=list(questions), answers=[], rounds=(spec.planning or {}).get("rounds", 0) + 1)
        spec.state = STATE
        full_name, number, known = spec.repo_full_name, spec.issue_number, (spec.stage_comments or {}).get(MARKER_STAGE)
    await _publish(gh, settings, spec_id, full_name, number, planning, known)


async def mark_answered(gh, settings: Settings, spec_id: int) -> None:
    """The requirements were written: show the questions comment as answered (with who answered)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        planning, full_name, number = dict(spec.planning or {}), spec.repo_full_name, spec.issue_number
        known = (spec.stage_comments or {}).get(MARKER_STAGE)
    await _publish(gh, settings, spec_id, full_name, number, planning, known, answered=True)


async def _publish(gh, settings, spec_id, full_name, number, planning, known, answered=False) -> None:
    body = render("spec/questions.md.j2", questions=planning.get("questions") or [], round=planning.get("rounds", 1),
                  answered=answered, answers=planning.get("answers") or [])
    result = await comments.upsert(gh, settings, full_name, number, markers.SPEC.prefix(stage=MARKER_STAGE), body,
                                   known_id=known)
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.stage_comments = dict(spec.stage_comments or {}) | {MARKER_STAGE: result.comment_id}


def waiting(settings: Settings, spec_id: int) -> bool:
    with session_scope(settings.database_url) as s:
        return s.get(Spec, spec_id).state == STATE


def record_answer(settings: Settings, spec_id: int, user: str, text: str) -> bool:
    """Keep a person's answer; True when it continues planning (the spec was waiting for answers:
    only the first of two answers arriving together does)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id, with_for_update=True)
        if spec is None or spec.state != STATE:
            return False
        answers = list((spec.planning or {}).get("answers") or [])[:MAX_ANSWERS - 1]
        _update(spec, answers=[*answers, {"user": user, "text": text}])
        spec.state = "planning"
    log.info("spec_answered", spec_id=spec_id, user=user, chars=len(text))
    return True


def continue_without(settings: Settings, spec_id: int) -> bool:
    """`/omoi plan` while questions wait: write the requirements without (more) answers."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id, with_for_update=True)
        if spec.state != STATE:
            return False
        spec.state = "planning"
    return True


def allow_another_round(settings: Settings, spec_id: int) -> None:
    """`/omoi plan --ask`: the next requirements call may ask questions again."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        rounds = (spec.planning or {}).get("rounds", 0)
        _update(spec, rounds_allowed=rounds + 1)
