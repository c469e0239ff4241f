"""REST: the App's webhook delivery log (Advanced -> Recent deliveries): list, get, redeliver."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlencode

from ..common import DOCS
from ..deliveries import post_webhook, record_hook_delivery
from ..models import HookDelivery
from ..routing import AUTH_JWT, ApiError, Reply, RequestContext, route


_HOOK_DOCS = f"{DOCS}/apps/webhooks"


def _hook_delivery(ctx: RequestContext) -> HookDelivery:
    wanted = ctx.int_param("delivery_id")
    for d in ctx.state.hook_deliveries:
        if d.id == wanted:
            return d
    raise ApiError(404, "Not Found", docs=f"{_HOOK_DOCS}#get-a-delivery-for-an-app-webhook")


@route("GET", "/app/hook/deliveries", auth=AUTH_JWT)
def list_hook_deliveries(ctx: RequestContext) -> Reply:
    """Newest first, cursor-paginated: ``Link: <...?cursor=v1_<id>>; rel="next"`` (the cursor names
    the first delivery of the next page, like GitHub's ``v1_12077215967``)."""
    try:
        per_page = max(1, min(100, int(ctx.query.get("per_page", 30))))
    except (TypeError, ValueError):
        raise ApiError(400, "Bad Request", docs=f"{_HOOK_DOCS}#list-deliveries-for-an-app-webhook") from None
    items = sorted(ctx.state.hook_deliveries, key=lambda d: d.id, reverse=True)
    status_filter = ctx.query.get("status")
    if status_filter == "success":
        items = [d for d in items if 200 <= d.status_code <= 399]
    elif status_filter == "failure":  # GitHub's classification: 400-599 only (not 0, "failed to connect")
        items = [d for d in items if 400 <= d.status_code <= 599]
    cursor = ctx.query.get("cursor")
    if cursor is not None:
        m = re.fullmatch(r"v1_(\d+)", str(cursor))
        if m is None:
            raise ApiError(400, "Bad Request", docs=f"{_HOOK_DOCS}#list-deliveries-for-an-app-webhook")
        items = [d for d in items if d.id <= int(m.group(1))]
    page, rest = items[:per_page], items[per_page:]
    headers = {}
    if rest:
        q = {k: v for k, v in ctx.query.items() if k not in ("cursor", "per_page")}
        q.update(per_page=per_page, cursor=f"v1_{rest[0].id}")
        headers["Link"] = f'<{ctx.state.base_url}/app/hook/deliveries?{urlencode(q, doseq=True)}>; rel="next"'
    return Reply(200, [d.item_json() for d in page], headers)


@route("GET", "/app/hook/deliveries/{delivery_id}", auth=AUTH_JWT)
def get_hook_delivery(ctx: RequestContext) -> Reply:
    return Reply(200, _hook_delivery(ctx).full_json())


@route("POST", "/app/hook/deliveries/{delivery_id}/attempts", auth=AUTH_JWT)
def redeliver_hook_delivery(ctx: RequestContext) -> Reply:
    """202 at once; the same payload and guid go to the original URL from a background thread and are
    recorded as a new delivery with ``redelivery: true`` (handlers must not block on the network)."""
    st = ctx.state
    original = _hook_delivery(ctx)

    def send() -> None:
        result = post_webhook(original.url, original.event, original.body, original.secret, original.guid,
                              st.app_id)
        with st.lock:
            record_hook_delivery(st, guid=original.guid, event=original.event, body=original.body,
                                 url=original.url, secret=original.secret, redelivery=True, result=result)

    thread = threading.Thread(target=send, name=f"redeliver-{original.id}", daemon=True)
    st.hook_threads.append(thread)
    thread.start()
    return Reply(202, {})
