"""app/model_proxy: the sandbox's only way to the model, over a real unix socket, in front of the
Anthropic stand-in. The `anthropic` SDK is the client, as the Claude Code CLI would be."""
from __future__ import annotations

import json

import aiohttp
import anthropic
import httpx2 as httpx
import pytest

from app.agent import model_proxy
from app.config import Settings
from tests.fakes.anthropic import Reply

REAL_KEY = "sk-ant-real-key-never-in-a-sandbox-0123456789"


@pytest.fixture
def settings(fake_anthropic) -> Settings:
    fake_anthropic.api_key = REAL_KEY  # the stand-in accepts nothing but the real key
    return Settings(anthropic_api_key=REAL_KEY, anthropic_base_url=fake_anthropic.url)


def client(socket_path: str, key: str) -> anthropic.AsyncAnthropic:
    transport = httpx.AsyncHTTPTransport(uds=socket_path)
    return anthropic.AsyncAnthropic(api_key=key, base_url="http://sandbox", max_retries=0,
                                    http_client=httpx.AsyncClient(transport=transport))


async def test_session_token_gets_the_model_with_the_real_key_added(settings, fake_anthropic, tmp_path):
    fake_anthropic.default_reply = Reply.text("hello from the model")
    sock = str(tmp_path / "model.sock")
    async with model_proxy.serve_unix(settings, sock, max_usd=10.0) as session:
        assert session.token.startswith("omoi-session-") and REAL_KEY not in session.token
        async with client(sock, session.token) as c:
            msg = await c.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                          messages=[{"role": "user", "content": "hi"}])
            streamed = await (await c.messages.create(
                model="claude-sonnet-4-5", max_tokens=100, stream=True,
                messages=[{"role": "user", "content": "hi"}])).__anext__()
        assert msg.content[0].text == "hello from the model" and streamed.type == "message_start"
    recorded = [r for r in fake_anthropic.requests if r.path == "/v1/messages"]
    assert len(recorded) == 2
    assert all(r.headers["x-api-key"] == REAL_KEY and "authorization" not in r.headers for r in recorded)
    assert session.calls >= 1 and session.cost_usd > 0 and session.input_tokens > 0


async def test_wrong_token_other_paths_and_methods_are_refused(settings, fake_anthropic, tmp_path):
    sock = str(tmp_path / "model.sock")
    async with model_proxy.serve_unix(settings, sock) as session:
        async with client(sock, "omoi-session-guessed") as c:
            with pytest.raises(anthropic.AuthenticationError):
                await c.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        async with client(sock, REAL_KEY) as c:  # even the real key is no session token
            with pytest.raises(anthropic.AuthenticationError):
                await c.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as http:
            headers = {"x-api-key": session.token}
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/files"), ("POST", "/v1/messages/batches"),
                                 ("GET", "/v1/messages"), ("POST", "/api/hello"), ("POST", "/v1/messages/../../x")):
                async with http.request(method, f"http://sandbox{path}", headers=headers, data=b"{}") as resp:
                    assert resp.status == 404, (method, path)
    assert fake_anthropic.requests == []  # nothing refused ever reached the model API


async def test_budget_and_token_limits_end_the_session(settings, fake_anthropic, tmp_path):
    sock = str(tmp_path / "model.sock")
    async with model_proxy.serve_unix(settings, sock, max_usd=0.000001, max_tokens_per_request=64) as session:
        async with client(sock, session.token) as c:
            await c.messages.create(model="claude-sonnet-4-5", max_tokens=20000, timeout=60,
                                    messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(anthropic.BadRequestError) as refused:
                await c.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                        messages=[{"role": "user", "content": "again"}])
    assert "budget" in str(refused.value)
    [sent] = fake_anthropic.message_requests()
    assert sent["max_tokens"] == 64  # clamped
    assert session.refused and session.calls == 1


async def test_usage_is_read_from_the_stream(settings, fake_anthropic, tmp_path):
    fake_anthropic.default_reply = Reply.text("x" * 400)
    sock = str(tmp_path / "model.sock")
    async with model_proxy.serve_unix(settings, sock) as session:
        async with client(sock, session.token) as c:
            async with c.messages.stream(model="claude-haiku-4-5", max_tokens=1000,
                                         messages=[{"role": "user", "content": "long"}]) as stream:
                final = await stream.get_final_message()
    assert session.output_tokens == final.usage.output_tokens > 0
    assert session.input_tokens >= final.usage.input_tokens
    assert json.dumps(final.model_dump())  # a well-formed answer came through unchanged


async def test_remote_sessions_live_in_the_database_and_end_when_closed(settings, fake_anthropic, tmp_path,
                                                                         aiohttp_client):
    """The web process's proxy (for Daytona sandboxes): a worker opens a session in the database, the
    web process serves it by the token's hash, adds usage to the row; closed or unknown tokens get 401."""
    from aiohttp import web

    from app.db.migrate import upgrade
    from app.db.models import ModelSession
    from app.db.session import session_scope

    settings = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/omoi.db"})
    upgrade(settings.database_url)  # the migrations, as every omoi process runs them
    token, row_id = model_proxy.open_db_session(settings.database_url, label="spec-1/T1", ttl_s=600, max_usd=5.0)
    app = web.Application()
    model_proxy.add_routes(app, settings)
    http = await aiohttp_client(app)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    resp = await http.post("/model-proxy/v1/messages", json=body, headers={"x-api-key": token})
    assert resp.status == 200, await resp.text()
    assert (await http.post("/model-proxy/v1/models", json=body, headers={"x-api-key": token})).status == 404
    assert (await http.post("/model-proxy/v1/messages", json=body, headers={"x-api-key": REAL_KEY})).status == 401
    with session_scope(settings.database_url) as s:
        row = s.get(ModelSession, row_id)
        assert row.calls == 1 and row.cost_usd > 0 and row.input_tokens > 0 and token not in row.token_sha256
    used = model_proxy.close_db_session(settings.database_url, row_id)
    assert used["calls"] == 1
    resp = await http.post("/model-proxy/v1/messages", json=body, headers={"x-api-key": token})
    assert resp.status == 401
    assert [r.headers["x-api-key"] for r in fake_anthropic.requests] == [REAL_KEY]
