"""The database: models, sessions, migrations, locks. The models kept outside app/db/models.py (its size limit)
are imported here, so `Base.metadata` always knows every table (migrations, compare_metadata)."""
from app.db import attempt_models  # noqa: F401 - registers task_attempts on Base.metadata
from app.db import write_slot_models  # noqa: F401 - registers github_write_slots on Base.metadata
