"""app/model_proxy: the sandbox's only way to the model, over a real unix socket, in front of the
Anthropic stand-in. The `anthropic` SDK is the client, as the Claude Code CLI would be."""
from __future__ import annotations

import json

import aiohttp
import anthropic
import httpx2 as httpx
import pytest

from app import model_proxy
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
