"""Prometheus metrics shared by the web and worker processes."""
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select

from app.db.models import LLMCall, Spec, WebhookDelivery
from app.db.session import session_scope
from app.timeutil import as_utc, utc_now

DELIVERIES = Counter(
    "omoi_webhook_deliveries_total", "Webhook deliveries by event and outcome", ["event", "outcome"]
)
ACK_SECONDS = Histogram(
    "omoi_webhook_ack_seconds",
    "Time from request start to the 2xx answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_PROCESSED = Counter(
    "omoi_events_processed_total", "Deliveries processed by the worker", ["event", "outcome"]
)
GITHUB_REQUESTS = Counter(
    "omoi_github_requests_total", "GitHub API requests by method and status", ["method", "status"]
)
LLM_TOKENS = Counter("omoi_llm_tokens_total", "Model tokens", ["model", "kind"])
LLM_COST = Counter("omoi_llm_cost_usd_total", "Model cost in dollars", ["model"])
GITHUB_REDELIVERIES = Counter(
    "omoi_github_redeliveries_total",
    "Failed GitHub deliveries the redelivery sweep acted on (app/intake/redelivery.py), by outcome",
    ["outcome"],  # requested (GitHub said 202) | refused (4xx: too old, unknown) | error (sweep failed)
)

# --- computed from the database at scrape time (cluster-wide: right whichever process serves them) ---
ACTIVE_STATES = ("acknowledged", "planning", "running")  # omoi is working, nobody is waiting on people
END_STATES = ("done", "failed", "rejected", "cancelled", "blocked")
RUN_END_STATES = ("succeeded", "failed", "cancelled")  # specs.run_state: executing the approved tasks
STUCK_AFTER_SECONDS = 3600
QUEUED_DELIVERY_STATES = ("received", "queued")
END_STATE_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)


class DatabaseCollector:
    """Gauges that must come from the shared database, not from one process's memory.

    omoi_runs_without_end_state      planning omoi is doing (state acknowledged/planning/running)
                                     with no change for an hour, and task runs (run_state running)
                                     started more than an hour ago
    omoi_delivery_queue_depth        deliveries stored but not yet taken by a worker
    omoi_spec_time_to_end_state_seconds  histogram: planning (creation to last change of a spec in an
                                     end state) and runs (run_started_at to run_finished_at)
    omoi_llm_tokens_recorded_total / omoi_llm_cost_usd_recorded_total  from llm_calls (all workers)
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def describe(self):
        return []  # nothing fixed to register: families are produced per scrape

    def collect(self):
        up = GaugeMetricFamily("omoi_database_metrics_up", "1 if the database answered the metrics queries")
        try:
            now = utc_now()
            with session_scope(self.database_url) as s:
                cutoff = now.timestamp() - STUCK_AFTER_SECONDS
                active = s.execute(
                    select(Spec.state, Spec.updated_at).where(Spec.state.in_(ACTIVE_STATES))
                ).all()
                runs_started = s.execute(
                    select(Spec.run_started_at).where(Spec.run_state == "running")
                ).scalars().all()
                runs_ended = s.execute(
                    select(Spec.run_state, Spec.run_started_at, Spec.run_finished_at)
                    .where(Spec.run_state.in_(RUN_END_STATES))
                ).all()
                queued = s.execute(
                    select(WebhookDelivery.status, func.count()).where(WebhookDelivery.status.in_(QUEUED_DELIVERY_STATES))
                    .group_by(WebhookDelivery.status)
                ).all()
                ended = s.execute(
                    select(Spec.state, Spec.created_at, Spec.updated_at).where(Spec.state.in_(END_STATES))
                ).all()
                usage = s.execute(
                    select(LLMCall.model, func.coalesce(func.sum(LLMCall.input_tokens), 0),
                           func.coalesce(func.sum(LLMCall.output_tokens), 0),
                           func.coalesce(func.sum(LLMCall.cache_creation_input_tokens), 0),
                           func.coalesce(func.sum(LLMCall.cache_read_input_tokens), 0),
                           func.coalesce(func.sum(LLMCall.cost_usd), 0)).group_by(LLMCall.model)
                ).all()
        except Exception:  # noqa: BLE001 - a scrape must never fail because the database did
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        stuck = GaugeMetricFamily(
            "omoi_runs_without_end_state",
            "Specs omoi is working on with no end state after an hour (planning: no change for an hour; "
            "run: started over an hour ago)", labels=["phase", "state"],
        )
        counts = {state: 0 for state in ACTIVE_STATES}
        for state, updated_at in active:
            if as_utc(updated_at).timestamp() < cutoff:
                counts[state] += 1
        for state, n in counts.items():
            stuck.add_metric(["planning", state], n)
        stuck.add_metric(["run", "running"], sum(
            1 for started in runs_started if started is not None and as_utc(started).timestamp() < cutoff))
        yield stuck

        depth = GaugeMetricFamily(
            "omoi_delivery_queue_depth", "Webhook deliveries stored but not yet taken by a worker", labels=["status"]
        )
        by_status = dict(queued)
        for status in QUEUED_DELIVERY_STATES:
            depth.add_metric([status], by_status.get(status, 0))
        yield depth

        hist = HistogramMetricFamily(
            "omoi_spec_time_to_end_state_seconds",
            "Seconds to an end state: planning (spec creation to done/failed/rejected/cancelled/blocked) "
            "and run (start of the task run to succeeded/failed/cancelled)",
            labels=["phase", "state"],
        )
        series = [("planning", state, [(as_utc(u) - as_utc(c)).total_seconds() for st, c, u in ended if st == state])
                  for state in END_STATES]
        series += [("run", state, [(as_utc(f) - as_utc(b)).total_seconds() for st, b, f in runs_ended
                                   if st == state and b is not None and f is not None]) for state in RUN_END_STATES]
        for phase, state, durations in series:
            buckets = [(floatToGoString(b), sum(1 for d in durations if d <= b)) for b in END_STATE_BUCKETS]
            buckets.append(("+Inf", len(durations)))
            hist.add_metric([phase, state], buckets, sum_value=sum(durations))
        yield hist

        tokens = CounterMetricFamily(
            "omoi_llm_tokens_recorded", "Model tokens recorded in llm_calls (all workers)", labels=["model", "kind"]
        )
        cost = CounterMetricFamily(
            "omoi_llm_cost_usd_recorded", "Model cost in dollars recorded in llm_calls (all workers)", labels=["model"]
        )
        for model, inp, out, cache_w, cache_r, usd in usage:
            for kind, n in (("input", inp), ("output", out), ("cache_creation", cache_w), ("cache_read", cache_r)):
                tokens.add_metric([model, kind], int(n))
            cost.add_metric([model], float(usd))
        yield tokens
        yield cost


def database_registry(database_url: str):
    """A registry holding only the database gauges (served next to the process's own metrics)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database_url))
    return registry
