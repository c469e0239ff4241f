"""Event handling: one gidgethub router per event domain, combined here."""
from gidgethub.routing import Router

from app.events import checks, comments, installation, issues, reviews

router = Router(installation.router, issues.router, comments.router, checks.router, reviews.router)

# Events omoi subscribes to (manifest.yml default_events). Others are acknowledged and dropped.
HANDLED_EVENTS = frozenset(
    {
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "check_run",
        "installation",
        "installation_repositories",
    }
)
