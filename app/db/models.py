"""Database models. GitHub comments are a rendering of this state, never the source of truth.

Note: never name a column `metadata` or `registry` (SQLAlchemy reserves them on the class).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.timeutil import utc_now

# BigInteger ids (GitHub ids exceed 2^31) that are still SQLite's rowid-style autoincrement.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


def _ts() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utc_now, nullable=False)


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # GitHub's id
    account_login: Mapped[str] = mapped_column(String(255), default="")
    account_type: Mapped[str] = mapped_column(String(32), default="")
    suspended: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now, nullable=False
    )


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # GitHub's id
    installation_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="SET NULL"), index=True
    )
    full_name: Mapped[str] = mapped_column(String(255), index=True)
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    removed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = _ts()


class WebhookDelivery(Base):
    """Every accepted delivery, stored before GitHub gets its 2xx so nothing acknowledged is lost."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    event: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str | None] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # "owner/repo#number" for events on one issue or PR: they are processed in arrival order.
    issue_key: Mapped[str | None] = mapped_column(String(300), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    # The X-Hub-Signature-256 the web process verified, and the body it signs when that is not the
    # payload column's own text (NULL for a UTF-8 body, nearly all: the payload column holds it
    # verbatim, both databases keep JSON text as written). The worker verifies them again and routes
    # the payload parsed from the signed bytes, so a row written into the database by anyone without
    # the webhook secret is never routed (app/intake/processing.py).
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    signature: Mapped[str | None] = mapped_column(String(80))
    # received -> queued -> processing -> done | failed | ignored
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _ts()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Spec(Base):
    """One tracked issue: omoi's plan for it and where that plan stands."""

    __tablename__ = "specs"
    __table_args__ = (UniqueConstraint("repo_full_name", "issue_number", name="uq_spec_issue"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    installation_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    repo_full_name: Mapped[str] = mapped_column(String(255))
    issue_number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    # acknowledged -> planning -> requirements -> design -> tasks -> approved -> complete (PR merged); also
    # blocked | failed | rejected | stopped (issue closed, label removed) | stale (issue edited before the run)
    state: Mapped[str] = mapped_column(String(32), default="acknowledged")
    requested_by: Mapped[str] = mapped_column(String(255), default="")
    ack_comment_id: Mapped[int | None] = mapped_column(BigInteger)
    # The repository as the plan saw it: default-branch head, a bounded digest, the file list.
    base_sha: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(Text)
    repo_files: Mapped[list | None] = mapped_column(JSON)
    # GitHub ids of the per-stage comments and the `omoi / spec` check run.
    stage_comments: Mapped[dict] = mapped_column(JSON, default=dict)
    spec_check_run_id: Mapped[int | None] = mapped_column(BigInteger)
    branch: Mapped[str | None] = mapped_column(String(255))  # omoi/issue-<n>-<slug>, fixed once chosen
    # Why planning or the run stopped: a reason code and its parameters (app/text/rendering.py `Reason`,
    # put into words by templates/reasons/); params NULL: English stored before reasons had codes.
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_params: Mapped[dict | None] = mapped_column(JSON)
    # Execution of the approved tasks (app/execution/orchestrator.py): running -> succeeded | failed | cancelled;
    # merged | closed: its pull request was merged, or closed without merging (work kept on the branch)
    run_state: Mapped[str | None] = mapped_column(String(16))
    run_error: Mapped[str | None] = mapped_column(Text)
    run_error_params: Mapped[dict | None] = mapped_column(JSON)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    implement_check_run_id: Mapped[int | None] = mapped_column(BigInteger)
    implement_check_sha: Mapped[str | None] = mapped_column(String(64))
    tracking_comment_id: Mapped[int | None] = mapped_column(BigInteger)
    # What omoi last sent for each rendering of the run ({"check": digest, "comment": ..., "pr": ...}):
    # a publish that would send the same body again sends nothing (app/execution/run_report.py).
    published: Mapped[dict | None] = mapped_column(JSON)
    run_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Budgets (app/execution/budgets.py): this spec's own limit when raised by `/omoi budget` (None: the repo's
    # budgets.spec_usd), dollars it may spend past the repo's monthly limit, and why the run paused.
    budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 6))
    budget_overage_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    budget_stop: Mapped[dict | None] = mapped_column(JSON)
    stall_reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # retry, budget resume or a merged revision: the stall clock starts again from here
    run_resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Endings (app/commands/lifecycle.py): the state before the issue was closed or unlabelled, and
    # when the pull request was merged (state complete).
    stopped_from: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    planning: Mapped[dict | None] = mapped_column(JSON)  # questions/answers, quick, explore (planning/questions.py)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now, nullable=False
    )


class Job(Base):
    """A unit of background work with a lease, so two workers never run it twice."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    spec_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    key: Mapped[str | None] = mapped_column(String(255), unique=True)  # idempotency key
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now, nullable=False
    )


class IssueLock(Base):
    """A per-issue mutex in the database: commands on one issue run one at a time."""

    __tablename__ = "issue_locks"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LLMCall(Base):
    """One model call, for token and cost accounting."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    purpose: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[bool] = mapped_column(default=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()


class SpecStage(Base):
    """One revision of one phase of a spec: the typed document, its gates and its approval."""

    __tablename__ = "spec_stages"
    __table_args__ = (UniqueConstraint("spec_id", "stage", "revision", name="uq_spec_stage_rev"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # requirements | design | tasks
    revision: Mapped[int] = mapped_column(Integer)
    # waiting | approved | blocked | superseded | stale | rejected
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    document: Mapped[dict] = mapped_column(JSON)
    gates: Mapped[list] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(32), default="")
    feedback: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[list] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    approved_by: Mapped[str | None] = mapped_column(String(255))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "edit": approved before the issue's body changed; shown stale until kept (approve) or revised
    stale_reason: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _ts()


class SpecTask(Base):
    """One task of an approved spec being executed: its lease, attempts, commit and evidence."""

    __tablename__ = "spec_tasks"
    __table_args__ = (UniqueConstraint("spec_id", "task_id", name="uq_spec_task"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))  # "T1"
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    covers: Mapped[list] = mapped_column(JSON, default=list)       # criterion ids
    depends_on: Mapped[list] = mapped_column(JSON, default=list)   # task ids
    files: Mapped[list] = mapped_column(JSON, default=list)        # the write set (paths)
    verify: Mapped[list] = mapped_column(JSON, default=list)       # shell commands
    # pending -> running -> done | failed | cancelled (pending again for a retry)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # retry backoff
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    duration_s: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(Text)  # a reason code; error_params its parameters
    error_params: Mapped[dict | None] = mapped_column(JSON)
    evidence: Mapped[list] = mapped_column(JSON, default=list)  # [{command, exit_code, tail, at}]
    # plan (from the approved tasks) | discovery (added by app/execution/discovery.py); kind implement | explore
    origin: Mapped[str] = mapped_column(String(16), default="plan")
    kind: Mapped[str] = mapped_column(String(16), default="implement")
    trajectory: Mapped[list] = mapped_column(JSON, default=list)  # the running agent's recent messages
    trajectory_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    guidance: Mapped[str | None] = mapped_column(Text)  # from the guardian, for the next attempt
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _ts()


class TaskIntegration(Base):
    """A verified task change waiting for its branch; one integrator pushes all (app/execution/integration.py)."""
    __tablename__ = "task_integrations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))
    lease_owner: Mapped[str] = mapped_column(String(255))  # pushed only while this attempt holds the task
    change: Mapped[dict] = mapped_column(JSON)  # base (sha), patch, message, paths (declared and touched)
    state: Mapped[str] = mapped_column(String(16), default="waiting")  # waiting -> pushed | refused | failed
    result: Mapped[dict | None] = mapped_column(JSON)  # sha, rebased, touched, existing, reason


class Discovery(Base):
    """New work an agent reported during a task (app/execution/discovery.py), and what omoi did with it."""

    __tablename__ = "discoveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))  # the reporting task
    kind: Mapped[str] = mapped_column(String(32))     # missing_requirement | bug | refactor | investigation
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str] = mapped_column(Text, default="")
    suggested_phase: Mapped[str] = mapped_column(String(16), default="tasks")
    files: Mapped[list] = mapped_column(JSON, default=list)
    # added | proposed | approved | duplicate | over_limit
    status: Mapped[str] = mapped_column(String(16), default="added")
    new_task_id: Mapped[str | None] = mapped_column(String(16))
    duplicate_of: Mapped[str | None] = mapped_column(String(64))
    comment_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _ts()


class CIRound(Base):
    """One round of fixing the failing checks of other apps on a spec's pull request (app/execution/ci_fix.py):
    one per failing head commit; `status` says how it ended."""

    __tablename__ = "ci_rounds"
    __table_args__ = (UniqueConstraint("spec_id", "head_sha", name="uq_ci_round_head"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=0)  # 1, 2, ...; 0 for a round that never ran (stopped)
    head_sha: Mapped[str] = mapped_column(String(64))  # the commit whose checks failed
    checks: Mapped[list] = mapped_column(JSON, default=list)  # [{name, conclusion, title, url}]
    # running | pushed | verify_failed | no_change | failed | stopped (the round limit or the budget)
    status: Mapped[str] = mapped_column(String(16), default="running")
    fix_sha: Mapped[str | None] = mapped_column(String(64))
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    reason: Mapped[str | None] = mapped_column(Text)  # a reason code; reason_params its parameters
    reason_params: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = _ts()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TaskTranscript(Base):
    """One attempt's transcript of a task: the agent's messages and tool calls as app/agent/transcript.py keeps
    them (redacted, clipped), written by the worker's heartbeat (app/db/transcripts.py); unlike
    `spec_tasks.trajectory` it outlives a retry, so the status page shows every attempt."""

    __tablename__ = "task_transcripts"
    __table_args__ = (UniqueConstraint("spec_id", "task_id", "attempt", name="uq_task_transcript"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    entries: Mapped[list] = mapped_column(JSON, default=list)  # the last app.db.transcripts.KEEP of them
    total: Mapped[int] = mapped_column(Integer, default=0)     # how many the session produced so far
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))  # this attempt's so far
    updated_at: Mapped[datetime] = _ts()


class Intervention(Base):
    """A supervisor's judgement of a running task and what it did about it (app/execution/supervision/)."""

    __tablename__ = "interventions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16))   # guardian | conductor | monitor
    verdict: Mapped[str] = mapped_column(String(16))  # on_track | drifting | stuck | looping | duplicate
    action: Mapped[str] = mapped_column(String(32))   # retry_with_guidance | stop_and_report | pause
    reason: Mapped[str] = mapped_column(Text, default="")  # the model's words, or a code with reason_params
    reason_params: Mapped[dict | None] = mapped_column(JSON)
    guidance: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a redirect reached the session


class WebhookRedelivery(Base):
    """A redelivery omoi asked GitHub for (app/intake/redelivery.py), one row per request.

    The row is committed before the request is sent, and both unique keys make it a claim: two
    sweeps (or two beat processes) that pick the same failed attempt, or the same attempt number
    for a delivery, insert only one row, so only one of them asks GitHub.
    """

    __tablename__ = "webhook_redeliveries"
    __table_args__ = (UniqueConstraint("guid", "attempt", name="uq_redelivery_attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    guid: Mapped[str] = mapped_column(String(64), index=True)  # X-GitHub-Delivery, our delivery_id
    attempt: Mapped[int] = mapped_column(Integer)              # 1, 2, ... up to the configured maximum
    # GitHub's id of the failed attempt redelivered (one guid has one id per attempt).
    github_delivery_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    event: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str | None] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    failed_status_code: Mapped[int] = mapped_column(Integer, default=0)  # 0: GitHub got no HTTP answer
    failed_status: Mapped[str] = mapped_column(String(255), default="")
    # claimed (row written, request not yet answered) -> requested (GitHub said 202) | refused (4xx)
    status: Mapped[str] = mapped_column(String(16), default="claimed")
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = _ts()


class ModelSession(Base):
    """A sandboxed agent session's capability at omoi's model proxy (app/agent/model_proxy.py), for sandboxes
    that reach the proxy over the network (Daytona): the web process serves it, a worker opens and
    closes it. Only the token's SHA-256 is stored; the token lives in the sandbox's environment."""

    __tablename__ = "model_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(200), default="")  # e.g. spec-12/T3 attempt 2
    max_usd: Mapped[float | None] = mapped_column(Numeric(12, 6))
    max_tokens_total: Mapped[int | None] = mapped_column(BigInteger)
    max_tokens_per_request: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal("0"))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))



class GitHubCache(Base):
    """What omoi knows of GitHub without asking again (app/github/cache.py)."""
    __tablename__ = "github_cache"
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
