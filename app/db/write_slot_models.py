"""When each installation may next create content on GitHub (app/github/write_slots.py): one row per
installation, shared by every omoi process, so GitHub's "about one content-creating write a second" holds
for the installation as a whole, not per process. Kept apart from app/db/models.py (size limit)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Float
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base


class GitHubWriteSlot(Base):
    """The earliest time (epoch seconds, float: the spacing is done in SQL arithmetic on both back ends)
    after the slot last handed out for this installation."""

    __tablename__ = "github_write_slots"

    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_at: Mapped[float] = mapped_column(Float, nullable=False)
