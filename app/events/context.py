"""What every event handler receives besides the event itself."""
from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from app.config import Settings
from app.github.auth import TOKENS
from app.github.client import OmoiGitHubAPI


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
            self._gh = OmoiGitHubAPI(self.session, self.settings, oauth_token=token)
        return self._gh
