"""Event handling: one gidgethub router per event domain, combined here.

The events the web process accepts are app/web/delivery.py's HANDLED_EVENTS (the web process
must not load these routers); every event routed here must be one of them, or it never arrives.
"""
from gidgethub.routing import Router

from app.events import checks, ci_results, comments, installation, issues, pull_requests, pushes, reviews
from app.web.delivery import HANDLED_EVENTS

__all__ = ["HANDLED_EVENTS", "router"]

router = Router(
    installation.router,
    issues.router,
    comments.router,
    checks.router,
    reviews.router,
    pull_requests.router,
    pushes.router,
    ci_results.router,
)

_routed = set(router._shallow_routes) | set(router._deep_routes)  # gidgethub keeps routes by event name
if not _routed <= HANDLED_EVENTS:
    raise RuntimeError(f"events routed but never accepted by the web process: {sorted(_routed - HANDLED_EVENTS)}")
