"""`/omoi ask <question>`: an answer about the repository and the plan, never a code change."""
from __future__ import annotations

from pydantic import BaseModel, Field

from app.config import Settings
from app.db.session import session_scope
from app.llm.structured import structured_output
from app.text.rendering import render
from app.planning import flow
from app.planning.digest import build_digest


class Answer(BaseModel):
    answer: str = Field(description="The answer in GitHub Markdown, at most a few paragraphs", max_length=6000)


async def answer(gh, settings: Settings, full_name: str, issue: dict, question: str) -> str:
    with session_scope(settings.database_url) as s:
        spec = flow.find_spec(s, full_name, issue["number"])
        spec_id, digest = (spec.id, spec.digest) if spec else (None, None)
        plan = flow.approved_documents_json(s, spec_id) if spec_id else ""
    if not digest:
        digest = (await build_digest(gh, full_name)).text
    prompt = render("prompts/ask.j2", question=question, title=issue.get("title", ""),
                    body=issue.get("body") or "", plan=plan)
    result = await structured_output(prompt, Answer, system=render("prompts/system.j2"), context=digest,
                                     purpose="ask", spec_id=spec_id, max_tokens=4096)
    return result.answer
