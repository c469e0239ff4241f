"""Recovery sweep of GitHub's delivery log: ask GitHub to redeliver what never reached omoi.

GitHub does not retry a webhook. When omoi is down, unreachable, too slow (GitHub waits 10 s) or
answers 503 (database down), the delivery is lost unless someone redelivers it. This sweep (Celery
beat, every `github_redelivery_interval_seconds`; `python -m app redeliver` for one run) reads the
App's recent deliveries with the App JWT (`GET /app/hook/deliveries`, newest first, back to
`github_redelivery_lookback_minutes` and at most `github_redelivery_max_pages` pages), groups the
attempts by guid (the `X-GitHub-Delivery` id omoi stores as `webhook_deliveries.delivery_id`) and
asks for a redelivery (`POST /app/hook/deliveries/{id}/attempts`) of the newest attempt of every
guid that

* has no successful (2xx) attempt,
* is not in `webhook_deliveries` (GitHub may record a timeout for a delivery omoi did store),
* failed in a way a second try can fix (`worth_redelivering`): no HTTP answer at all (status code
  0: connection refused or reset, timed out), 408, 429 or a 5xx. Other 4xx (401 bad signature, 400
  malformed, 413 too large) and 3xx are omoi's considered answer to those exact bytes; a
  redelivery sends the same bytes and signature and would get the same answer,
* has had fewer than `github_redelivery_max_attempts` redeliveries requested, and whose newest
  attempt is not one omoi already asked about (GitHub has not logged that redelivery yet).

Each request is first claimed in `webhook_redeliveries` (unique GitHub delivery id, unique guid +
attempt number) and committed, so concurrent sweeps or two beat processes ask once, and a restart
remembers what was asked (a claim a dead sweep left unanswered is released after 15 minutes).
Errors talking to GitHub end the sweep with a log line, never an exception: the next sweep tries
again. Known limit: a redelivery GitHub accepted (202) but never attempted is not asked again.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import aiohttp
import gidgethub
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.db.models import WebhookDelivery, WebhookRedelivery
from app.db.session import session_scope
from app.github.client import OmoiGitHubAPI, app_client
from app.observability.logs import get_logger
from app.observability.metrics import GITHUB_REDELIVERIES
from app.timeutil import utc_now

log = get_logger("omoi.redelivery")
PER_PAGE = 100
# GitHub's answers to a redelivery request that will not change on the next sweep (the delivery
# is too old, unknown, or refused): the claim is kept as `refused` and counts as an attempt.
REFUSED_STATUSES = {400, 404, 410, 422}
# A claim still unanswered after this long belongs to a sweep that died between claiming and asking.
STALE_CLAIM = timedelta(minutes=15)


def worth_redelivering(status_code: int) -> bool:
    """A failed attempt a redelivery can fix: no HTTP answer (0), 408, 429 or a 5xx."""
    return status_code == 0 or status_code in (408, 429) or 500 <= status_code <= 599


def _succeeded(status_code: int) -> bool:
    return 200 <= status_code <= 299


@dataclass
class SweepReport:
    scanned: int = 0          # attempts read from GitHub's delivery log
    failed: int = 0           # guids in the window without a successful attempt
    stored: int = 0           # ... but in webhook_deliveries anyway (GitHub gave up, omoi had it)
    permanent: int = 0        # ... whose newest attempt got an answer a redelivery cannot change
    pending: int = 0          # ... already asked about; GitHub has not logged the redelivery yet
    exhausted: int = 0        # ... already redelivered github_redelivery_max_attempts times
    claimed_elsewhere: int = 0  # another sweep claimed the same attempt first
    requested: list[str] = field(default_factory=list)  # guids redelivered by this sweep
    refused: list[str] = field(default_factory=list)    # guids GitHub would not redeliver
    would_request: list[str] = field(default_factory=list)  # dry run: guids that would be redelivered
    error: str | None = None
    skipped: str | None = None  # why nothing was read ("no_app_credentials")

    def as_dict(self) -> dict:
        return asdict(self)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _recent_attempts(gh: OmoiGitHubAPI, settings: Settings, report: SweepReport) -> dict[str, list[dict]]:
    """Attempts in the look-back window, by guid (newest first: stop at the first older one)."""
    cutoff = utc_now() - timedelta(minutes=settings.github_redelivery_lookback_minutes)
    limit = max(1, settings.github_redelivery_max_pages) * PER_PAGE
    by_guid: dict[str, list[dict]] = defaultdict(list)
    async for item in gh.getiter(f"/app/hook/deliveries?per_page={PER_PAGE}"):
        try:
            if _parse_time(item["delivered_at"]) < cutoff:
                break
            attempt = {**item, "guid": str(item["guid"]), "id": int(item["id"]),
                       "status_code": int(item["status_code"])}
        except (KeyError, TypeError, ValueError):
            continue  # not what GitHub documents: skip the entry rather than the whole sweep
        report.scanned += 1
        by_guid[attempt["guid"]].append(attempt)
        if report.scanned >= limit:  # stop before fetching another page
            log.warning("github_redelivery_page_cap", attempts=report.scanned,
                        pages=settings.github_redelivery_max_pages)
            break
    return by_guid


def _candidates(by_guid: dict[str, list[dict]], report: SweepReport) -> list[dict]:
    """The newest attempt of every guid that never succeeded and failed in a way worth retrying."""
    out = []
    for attempts in by_guid.values():
        if any(_succeeded(a["status_code"]) for a in attempts):
            continue
        report.failed += 1
        newest = max(attempts, key=lambda a: a["id"])
        if not worth_redelivering(newest["status_code"]):
            report.permanent += 1
            continue
        out.append({**newest, "first_id": min(a["id"] for a in attempts)})
    return out


def _known(settings: Settings, guids: list[str]) -> tuple[set[str], dict[str, int], set[int]]:
    """Guids stored as deliveries; redelivery requests per guid; GitHub delivery ids already asked about."""
    stored: set[str] = set()
    counts: dict[str, int] = {}
    asked: set[int] = set()
    with session_scope(settings.database_url) as s:
        for i in range(0, len(guids), 500):
            chunk = guids[i:i + 500]
            stored.update(s.scalars(select(WebhookDelivery.delivery_id).where(WebhookDelivery.delivery_id.in_(chunk))))
            for guid, n, top in s.execute(
                select(WebhookRedelivery.guid, func.count(), func.max(WebhookRedelivery.attempt))
                .where(WebhookRedelivery.guid.in_(chunk)).group_by(WebhookRedelivery.guid)
            ):
                counts[guid] = max(int(n), int(top or 0))
            asked.update(s.scalars(
                select(WebhookRedelivery.github_delivery_id).where(WebhookRedelivery.guid.in_(chunk))))
    return stored, counts, asked


def _claim(settings: Settings, item: dict, attempt: int) -> int | None:
    """Commit the request before making it; None when another sweep holds the same claim."""
    action = item.get("action")
    try:
        with session_scope(settings.database_url) as s:
            row = WebhookRedelivery(
                guid=str(item["guid"])[:64], attempt=attempt, github_delivery_id=int(item["id"]),
                event=str(item.get("event") or "")[:64], action=action[:64] if isinstance(action, str) else None,
                installation_id=item.get("installation_id") if isinstance(item.get("installation_id"), int) else None,
                failed_status_code=item["status_code"], failed_status=str(item.get("status") or "")[:255],
            )
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:
        return None


def _settle(settings: Settings, pk: int, status: str | None, error: str | None = None) -> None:
    """Record GitHub's answer; status None releases the claim (GitHub failed: the next sweep asks again)."""
    with session_scope(settings.database_url) as s:
        if status is None:
            s.execute(delete(WebhookRedelivery).where(WebhookRedelivery.id == pk))
            return
        row = s.get(WebhookRedelivery, pk)
        if row is not None:
            row.status, row.error = status, error


def _release_stale_claims(settings: Settings) -> None:
    with session_scope(settings.database_url) as s:
        s.execute(delete(WebhookRedelivery).where(WebhookRedelivery.status == "claimed",
                                                  WebhookRedelivery.requested_at < utc_now() - STALE_CLAIM))


async def _sweep(settings: Settings, dry_run: bool, report: SweepReport) -> None:
    if not dry_run:
        _release_stale_claims(settings)
    async with app_client(settings) as gh:
        by_guid = await _recent_attempts(gh, settings, report)
        candidates = _candidates(by_guid, report)
        if not candidates:
            return
        stored, counts, asked = _known(settings, [c["guid"] for c in candidates])
        for item in sorted(candidates, key=lambda c: c["first_id"]):  # in the order GitHub first sent them
            guid, github_id = item["guid"], item["id"]
            if guid in stored:
                report.stored += 1
                continue
            if github_id in asked:
                report.pending += 1
                continue
            done = counts.get(guid, 0)
            if done >= settings.github_redelivery_max_attempts:
                report.exhausted += 1
                continue
            if dry_run:
                report.would_request.append(guid)
                continue
            pk = _claim(settings, item, done + 1)
            if pk is None:
                report.claimed_elsewhere += 1
                continue
            try:
                await gh.post("/app/hook/deliveries/{delivery_id}/attempts", {"delivery_id": github_id}, data=b"")
            except gidgethub.BadRequest as exc:
                if exc.status_code not in REFUSED_STATUSES:
                    _settle(settings, pk, None)
                    raise
                _settle(settings, pk, "refused", f"{exc.status_code}: {exc}"[:2000])
                GITHUB_REDELIVERIES.labels("refused").inc()
                report.refused.append(guid)
                log.warning("github_redelivery_refused", guid=guid, github_delivery_id=github_id,
                            status=exc.status_code, error=str(exc)[:200])
                continue
            except BaseException:
                _settle(settings, pk, None)
                raise
            _settle(settings, pk, "requested")
            GITHUB_REDELIVERIES.labels("requested").inc()
            report.requested.append(guid)
            log.info("github_redelivery_requested", guid=guid, github_delivery_id=github_id, attempt=done + 1,
                     webhook_event=item.get("event"), action=item.get("action"), failed_status_code=item["status_code"],
                     failed_status=item.get("status"))


def sweep_github_deliveries(settings: Settings, *, dry_run: bool = False) -> SweepReport:
    """One sweep (see the module docstring). Never raises: problems are logged and reported."""
    if not settings.has_app_credentials():
        log.debug("github_redelivery_skipped", reason="no App id and private key")
        return SweepReport(skipped="no_app_credentials")
    report = SweepReport()  # filled as the sweep goes: an error keeps what was already done
    try:
        asyncio.run(_sweep(settings, dry_run, report))
    except (gidgethub.GitHubException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        GITHUB_REDELIVERIES.labels("error").inc()
        status = getattr(exc, "status_code", None)
        report.error = f"{exc.__class__.__name__}{f' {int(status)}' if status else ''}: {exc}"[:300]
        log.warning("github_redelivery_sweep_failed", error=report.error, requested=len(report.requested))
        return report
    except Exception as exc:  # noqa: BLE001 - a beat job must not die; the next sweep tries again
        GITHUB_REDELIVERIES.labels("error").inc()
        report.error = exc.__class__.__name__
        log.exception("github_redelivery_sweep_failed", error=report.error, requested=len(report.requested))
        return report
    counts = {k: v for k, v in report.as_dict().items() if v and k not in ("requested", "refused", "would_request")}
    if report.requested or report.refused:
        log.info("github_redelivery_sweep", requested=len(report.requested), refused=len(report.refused),
                 **counts)
    else:
        log.debug("github_redelivery_sweep", **counts)
    return report
