"""Server-rendered HTML pages (setup flow, status pages): Jinja2 templates under templates/web/.

A separate environment from app/text/rendering.py: that one renders Markdown for GitHub with
autoescape off; here every value is HTML-escaped unless a template says otherwise.
"""
from __future__ import annotations

from functools import lru_cache

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.text.rendering import TEMPLATES

WEB_TEMPLATES = TEMPLATES / "web"
# Pages show state, never take actions: no framing, no scripts from elsewhere, no referrer leaks
# (a status link carries its signature in the query string).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action *; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def html_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(WEB_TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(name: str, **context) -> str:
    return html_environment().get_template(name).render(**context)


def page(name: str, status: int = 200, *, script_nonce: str | None = None, **context) -> web.Response:
    """`script_nonce`: the page carries one script of its own (`<script nonce=...>`), which may fetch
    from this origin; nothing else runs."""
    headers = dict(SECURITY_HEADERS)
    if script_nonce:
        headers["Content-Security-Policy"] += f"; script-src 'nonce-{script_nonce}'; connect-src 'self'"
    return web.Response(
        text=render_page(name, script_nonce=script_nonce or "", **context), status=status, content_type="text/html",
        charset="utf-8", headers=headers,
    )


def error_page(status: int, reason: str) -> web.Response:
    """403/404/400 pages; `reason` selects the wording in templates/web/error.html.j2."""
    return page("error.html.j2", status=status, status_code=status, reason=reason)
