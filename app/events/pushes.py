"""push events: a push to a default branch invalidates what omoi cached about the repository."""
from gidgethub.routing import Router

router = Router()
