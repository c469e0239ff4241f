"""pull_request events on omoi's pull requests."""
from gidgethub.routing import Router

router = Router()
