"""Webhook emission: GitHub's hookshot posting one signed delivery, the App's delivery log it
writes, and the FakeGitHub methods that send events and read the log (test thread)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from ..webhooks import headers_for
from .models import HookDelivery
from .state import GitHubState


HOOK_TIMEOUT_SECONDS = 10  # GitHub gives a delivery 10 s, then records it as timed out


def post_webhook(url: str, event: str, body: bytes, secret: str, guid: str, app_id: int,
                 timeout: float = HOOK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """POST one signed delivery like GitHub's hookshot; never raises. Call without the state lock."""
    headers = headers_for(event, body, secret, guid, target_id=app_id)
    out: dict[str, Any] = {"request_headers": headers, "response_headers": {}, "response_body": None,
                           "delivered_at": time.time()}
    started = time.monotonic()
    try:
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            code, resp_headers, text = resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        code, resp_headers, text = exc.code, dict(exc.headers or {}), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:  # no HTTP answer at all: GitHub records status_code 0
        timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
        out.update(status="timed out" if timed_out else "failed to connect to host", status_code=0,
                   duration=round(time.monotonic() - started, 3))
        return out
    out.update(status="OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}", status_code=code,
               response_headers=resp_headers, response_body=text)
    out["duration"] = round(time.monotonic() - started, 3)
    return out


def record_hook_delivery(st: "GitHubState", *, guid: str, event: str, body: bytes, url: str, secret: str,
                         redelivery: bool, result: dict[str, Any]) -> HookDelivery:
    """Append one attempt to the delivery log (caller holds the state lock)."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    inst, repo = payload.get("installation"), payload.get("repository")
    action = payload.get("action")
    d = HookDelivery(
        id=st.next_id(), guid=guid, delivered_at=result["delivered_at"], redelivery=redelivery,
        duration=result["duration"], status=result["status"], status_code=result["status_code"],
        event=event, action=action if isinstance(action, str) else None,
        installation_id=inst.get("id") if isinstance(inst, dict) and isinstance(inst.get("id"), int) else None,
        repository_id=repo.get("id") if isinstance(repo, dict) and isinstance(repo.get("id"), int) else None,
        url=url, secret=secret, body=body, request_headers=result["request_headers"],
        response_headers=result["response_headers"], response_body=result["response_body"],
    )
    st.hook_deliveries.append(d)
    return d


class HookDeliveryLog:
    """FakeGitHub's webhook side: deliver events like GitHub and inspect the delivery log."""

    def send_webhook(self, url: str, secret: str, event: str, payload: dict[str, Any] | bytes, *,
                     guid: str | None = None, timeout: float = HOOK_TIMEOUT_SECONDS) -> str:
        """Deliver one event the way GitHub does: POST the signed payload to ``url`` (synchronously, so
        the attempt is logged when this returns) and record it in the App's delivery log, with
        ``status_code`` 0 and ``status`` "failed to connect to host" when nothing answered. Returns
        the guid (the ``X-GitHub-Delivery`` header). ``POST /app/hook/deliveries/{id}/attempts``
        later sends the same bytes, guid and secret to the same ``url``."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        guid = guid or str(uuid.uuid4())
        result = post_webhook(url, event, body, secret, guid, self.state.app_id, timeout=timeout)
        with self.state.lock:
            record_hook_delivery(self.state, guid=guid, event=event, body=body, url=url, secret=secret,
                                 redelivery=False, result=result)
        return guid

    def hook_deliveries(self, guid: str | None = None) -> list[dict[str, Any]]:
        """The delivery log, oldest first, as ``hook-delivery-item`` JSON (only ``guid``'s attempts if given)."""
        with self.state.lock:
            return [d.item_json() for d in self.state.hook_deliveries if guid is None or d.guid == guid]

    def redelivery_requests(self, guid: str | None = None) -> list[int]:
        """Delivery ids named in ``POST /app/hook/deliveries/{id}/attempts`` calls answered 202, in order
        (only those of ``guid``'s attempts if given)."""
        with self.state.lock:
            guid_of = {d.id: d.guid for d in self.state.hook_deliveries}
        ids = [int(c.path.split("/")[4]) for c in self.calls_matching("POST", r"^/app/hook/deliveries/\d+/attempts$")
               if c.status == 202]
        return [i for i in ids if guid is None or guid_of.get(i) == guid]

    def wait_for_redeliveries(self, timeout: float = 30) -> None:
        """Block until every redelivery GitHub accepted so far has been attempted and logged."""
        deadline = time.monotonic() + timeout
        while True:
            with self.state.lock:
                pending = [t for t in self.state.hook_threads if t.is_alive()]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} redeliveries still running after {timeout}s")
            pending[0].join(max(0.0, deadline - time.monotonic()))
