"""GitHub's REST endpoints the stand-in serves, one module per area of the API.

Importing this package registers every handler with ``routing.route`` (the server does it). To
add an endpoint, write a handler in the module of its area (or a new module imported below).
"""

from . import (  # noqa: F401  (imported for their @route registrations, in this order)
    apps,
    hook_deliveries,
    repos,
    issues,
    comments,
    reactions,
    contents,
    commits,
    refs,
    checks,
    ci,
    pulls,
    review_comments,
    app_manifests,
)
