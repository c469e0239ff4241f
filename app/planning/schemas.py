"""Typed spec documents: what the model writes (``*Draft``) and what omoi keeps.

The model writes content only; omoi owns structure.  IDs (R1, R1.2, T3) are
assigned here, never by the model, so they cannot collide, skip or drift, and a
revision keeps its numbering by position.  Every free-text field and list has a
hard cap: the model's output is untrusted input that ends up in a GitHub comment
and in prompts.  These caps are deliberately looser than the quality limits in
``app.planning.gates``: exceeding a gate limit produces a readable retry message,
exceeding a cap here is abuse or a runaway generation and fails validation.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

__all__ = [
    "Priority", "EarsPattern", "FileAction", "TaskSize", "TaskKind",
    "CriterionDraft", "StoryDraft", "RequirementsDraft", "Criterion", "Story", "Requirements",
    "Component", "Decision", "FileChange", "Risk", "DesignDraft", "Design",
    "TaskFile", "TaskDraft", "TasksDraft", "Task", "Tasks",
    "assign_ids", "assign_task_ids", "STAGES", "DOCUMENT_TYPES", "MAX_QUESTIONS",
]

Priority = Literal["must", "should", "could"]
EarsPattern = Literal["ubiquitous", "event", "state", "unwanted", "optional", "complex"]
FileAction = Literal["create", "modify", "delete"]
TaskSize = Literal["S", "M", "L"]
TaskKind = Literal["test", "implement", "refactor", "docs"]


def _text(max_length: int, min_length: int = 1):
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)]


Short = _text(120)
Line = _text(300)
Para = _text(1000)
Long = _text(3000)
Path = _text(200)
Key = _text(40)
RefId = _text(20)
Desc = _text(2000)


class _Model(BaseModel):
    # Extra keys are ignored rather than rejected: a model that adds a stray
    # field should not burn a retry; missing or over-long fields still fail.
    model_config = ConfigDict(extra="ignore")


# --- requirements -----------------------------------------------------------


class CriterionDraft(_Model):
    pattern: EarsPattern = Field(description="EARS pattern of the sentence")
    text: Para = Field(description="One EARS sentence, e.g. 'WHEN <trigger>, THE <system> SHALL <response>'")
    verification: Line = Field(description="How to check it: which test or inspection proves it")


class StoryDraft(_Model):
    title: Short
    as_a: Line
    i_want: Line
    so_that: Line
    priority: Priority
    criteria: list[CriterionDraft] = Field(max_length=20)


MAX_QUESTIONS = 5  # clarifying questions per round (spec-kit's /clarify asks at most 5 too)


class RequirementsDraft(_Model):
    summary: Long = Field(description="Why this change, in 1-3 sentences")
    stories: list[StoryDraft] = Field(default_factory=list, max_length=50)
    open_questions: list[Line] = Field(default_factory=list, max_length=10)
    out_of_scope: list[Line] = Field(default_factory=list, max_length=20)
    # Only when the prompt allows it: the issue is too ambiguous to specify, so ask instead (stories empty).
    questions: list[Line] = Field(default_factory=list, max_length=MAX_QUESTIONS,
                                  description="Clarifying questions, only if the prompt allows them; else empty")

    @model_validator(mode="after")
    def _stories_or_questions(self) -> "RequirementsDraft":
        if not self.stories and not self.questions:
            raise ValueError("write at least one story")
        return self


class Criterion(CriterionDraft):
    id: str  # "R1.2", assigned by omoi


class Story(StoryDraft):
    id: str  # "R1", assigned by omoi
    criteria: list[Criterion] = Field(max_length=20)


class Requirements(_Model):
    summary: Long
    stories: list[Story] = Field(max_length=50)
    open_questions: list[Line] = Field(default_factory=list, max_length=10)
    out_of_scope: list[Line] = Field(default_factory=list, max_length=20)

    def criteria(self) -> dict[str, tuple[Story, Criterion]]:
        """Every criterion by ID, with its story (for priority lookups)."""
        return {c.id: (s, c) for s in self.stories for c in s.criteria}


def assign_ids(draft: RequirementsDraft) -> Requirements:
    """Number stories R1.. and criteria R<story>.<n> by position (deterministic)."""
    stories = []
    for i, s in enumerate(draft.stories, start=1):
        criteria = [
            Criterion(id=f"R{i}.{j}", **c.model_dump()) for j, c in enumerate(s.criteria, start=1)
        ]
        stories.append(Story(id=f"R{i}", **s.model_dump(exclude={"criteria"}), criteria=criteria))
    return Requirements(
        summary=draft.summary,
        stories=stories,
        open_questions=list(draft.open_questions),
        out_of_scope=list(draft.out_of_scope),
    )


# --- design -----------------------------------------------------------------


class Component(_Model):
    name: Short
    responsibility: Para
    files: list[Path] = Field(default_factory=list, max_length=10)
    # Story IDs ("R1") this component serves; optional so the model is not forced
    # to invent links, but used by the design coverage gate when given.
    satisfies: list[RefId] = Field(default_factory=list, max_length=30)

    @field_validator("satisfies")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [s.upper() for s in v]


class Decision(_Model):
    title: Short
    choice: Para
    alternatives: list[Line] = Field(default_factory=list, max_length=6)
    rationale: Para


class FileChange(_Model):
    path: Path
    action: FileAction
    purpose: Line


class Risk(_Model):
    risk: Line
    mitigation: Line


class DesignDraft(_Model):
    overview: Long
    components: list[Component] = Field(default_factory=list, max_length=20)
    data_changes: list[Line] = Field(default_factory=list, max_length=15)
    interface_changes: list[Line] = Field(default_factory=list, max_length=15)
    decisions: list[Decision] = Field(default_factory=list, max_length=10)
    file_plan: list[FileChange] = Field(default_factory=list, max_length=60)
    risks: list[Risk] = Field(default_factory=list, max_length=10)
    testing_strategy: Long


# The design has no omoi-owned IDs yet: components and files are named by the
# model and keyed by name/path.  A separate name keeps call sites symmetric.
Design = DesignDraft


# --- tasks ------------------------------------------------------------------


class TaskFile(_Model):
    path: Path
    action: FileAction


class TaskDraft(_Model):
    # The model cannot know final IDs (omoi reorders), and indexes break when it
    # inserts a task; a short self-chosen key is what models get right.
    key: Key = Field(description="Short unique slug for this task, e.g. 'parser-tests'")
    title: Short
    description: Desc
    covers: list[RefId] = Field(default_factory=list, max_length=20, description="Criterion IDs, e.g. 'R1.2'")
    depends_on: list[Key] = Field(default_factory=list, max_length=20, description="Keys of tasks this one needs")
    files: list[TaskFile] = Field(default_factory=list, max_length=20)
    verify: list[Line] = Field(default_factory=list, max_length=10, description="Shell commands that prove it works")
    size: TaskSize
    kind: TaskKind

    @field_validator("covers")
    @classmethod
    def _norm_covers(cls, v: list[str]) -> list[str]:
        return [c.upper() for c in v]


def _norm_key(key: str) -> str:
    return key.strip().lower()


class TasksDraft(_Model):
    # 200 is an abuse cap; the gate's limit (40) is the one a plan should meet.
    tasks: list[TaskDraft] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _unique_keys(self) -> "TasksDraft":
        seen: set[str] = set()
        for t in self.tasks:
            k = _norm_key(t.key)
            if k in seen:
                raise ValueError(f"duplicate task key {t.key!r}: every task needs its own key")
            seen.add(k)
        return self


class Task(TaskDraft):
    id: str  # "T3", assigned by omoi
    depends_on: list[str] = Field(default_factory=list)  # task IDs
    # Keys the model referenced that match no task; kept so the gate can name them.
    unresolved_deps: list[str] = Field(default_factory=list)


class Tasks(_Model):
    tasks: list[Task] = Field(max_length=200)

    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}


def assign_task_ids(draft: TasksDraft) -> Tasks:
    """Order tasks dependencies-first (stable), number them T1.., rewrite keys to IDs.

    Kahn's algorithm, always taking the earliest-listed ready task, so the
    model's order is kept wherever it is already consistent.  A cycle cannot be
    ordered; its members are placed in listed order and the cycle gate reports it.
    """
    items = draft.tasks
    index = {_norm_key(t.key): i for i, t in enumerate(items)}
    deps = [
        {index[_norm_key(d)] for d in t.depends_on if _norm_key(d) in index} - {i}
        for i, t in enumerate(items)
    ]
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(items):
        ready = [i for i in range(len(items)) if i not in placed and deps[i] <= placed]
        # No ready task means a cycle: break it at the earliest-listed task.
        nxt = ready[0] if ready else min(i for i in range(len(items)) if i not in placed)
        order.append(nxt)
        placed.add(nxt)
    ids = {i: f"T{n}" for n, i in enumerate(order, start=1)}
    tasks = []
    for i in order:
        t = items[i]
        resolved, unresolved = [], []
        for d in t.depends_on:
            j = index.get(_norm_key(d))
            if j is None:
                unresolved.append(d)
            elif ids[j] not in resolved:
                resolved.append(ids[j])
        tasks.append(Task(id=ids[i], **t.model_dump(exclude={"depends_on"}), depends_on=resolved, unresolved_deps=unresolved))
    return Tasks(tasks=tasks)


STAGES = ("requirements", "design", "tasks")  # the order a spec is written and approved in
DOCUMENT_TYPES: dict[str, type[BaseModel]] = {"requirements": Requirements, "design": Design, "tasks": Tasks}
