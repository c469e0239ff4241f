"""Prometheus metrics shared by the web and worker processes."""
from prometheus_client import Counter, Histogram

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
