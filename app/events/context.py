"""What every event handler receives besides the event itself."""
from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from app.config import Settings
from app.db import claims
from app.github import comments
from app.github.auth import TOKENS
from app.github.client import OmoiGitHubAPI
from app.text import markers
from app.text.rendering import render


@dataclass
class EventContext:
    settings: Settings
    session: aiohttp.ClientSession
    delivery_id: str
    installation_id: int | None
    log: object
    _gh: OmoiGitHubAPI | None = field(default=None, repr=False)

    async def gh(self) -> OmoiGitHubAPI:
        """The installation client, authenticated on first use (installation.deleted never needs it)."""
        if self._gh is None:
            if self.installation_id is None:
                raise RuntimeError("event has no installation; cannot call GitHub")
            app_gh = OmoiGitHubAPI(self.session, self.settings)
            token = await TOKENS.get(app_gh, self.settings, self.installation_id)
            self._gh = OmoiGitHubAPI(self.session, self.settings, installation_id=int(self.installation_id),
                                     oauth_token=token)
        return self._gh


async def refuse_once(ctx: EventContext, gh, full_name: str, number: int, sender: dict, where: str) -> bool:
    """Someone without write access asked omoi for something (`where`: comment, label, review, button):
    one polite notice per issue or pull request, however many times people try; never to a bot.
    Returns True when this call posted it."""
    ctx.log.info("refused", sender=sender.get("login"), where=where, issue=number)
    if sender.get("type") == "Bot" or not claims.claim(f"refused:{full_name}#{number}", "notice"):
        return False
    await comments.upsert(gh, ctx.settings, full_name, number, markers.REFUSED.prefix(),
                          render("replies/permission_denied.md.j2", user=sender.get("login", ""), where=where))
    return True
