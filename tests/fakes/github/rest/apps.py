"""REST: the App itself and its installations (``GET /app``, installation access tokens)."""

from __future__ import annotations

import secrets
import time

from ..common import DOCS, TOKEN_TTL_SECONDS, now_iso
from ..models import Token
from ..routing import AUTH_JWT, ApiError, Reply, RequestContext, route


@route("GET", "/app", auth=AUTH_JWT)
def get_app(ctx: RequestContext) -> Reply:
    return Reply(200, ctx.state.integration())


@route("POST", "/app/installations/{installation_id}/access_tokens", auth=AUTH_JWT)
def create_installation_token(ctx: RequestContext) -> Reply:
    st = ctx.state
    inst = st.installations.get(ctx.int_param("installation_id"))
    if inst is None:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/apps/apps#create-an-installation-access-token-for-an-app")
    expires = time.time() + TOKEN_TTL_SECONDS
    token = Token("ghs_" + secrets.token_hex(18), inst.id, expires)
    st.tokens[token.value] = token
    st.tokens_issued[inst.id] += 1
    return Reply(201, {
        "token": token.value,
        "expires_at": now_iso(expires),
        "permissions": dict(inst.permissions),
        "repository_selection": "all",
    })
