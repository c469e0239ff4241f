"""GitHub's OpenAPI description: where it lives, loading it once per process, and the schema
validator with two fixes for the description (nullable enums, discriminators on non-objects)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.validators import extend
from openapi_schema_validator import OAS30Validator


FAKES_DIR = Path(__file__).resolve().parent.parent
SPEC_PATH = FAKES_DIR / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
SPEC_URI = "urn:gh"

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# GitHub can answer *any* endpoint with these (bad credentials, no access to the
# repository, secondary rate limits, validation, outages), but the description
# lists them only on some operations. A response with one of these statuses is
# not flagged as "undocumented"; its body is still checked when a schema exists.
GENERIC_STATUSES = frozenset({304, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504})


def _nullable_enum(validator: Any, enums: Any, instance: Any, schema: dict[str, Any]) -> Any:
    # GitHub marks fields like check-run ``conclusion`` or issue ``state_reason``
    # as ``nullable: true`` with an ``enum`` that lacks null, and really sends
    # null. Strict OAS 3.0.3 reading rejects that; accept null when nullable.
    if instance is None and schema.get("nullable") is True:
        return
    yield from OAS30Validator.VALIDATORS["enum"](validator, enums, instance, schema)


def _discriminated(keyword: str) -> Any:
    oas_impl = OAS30Validator.VALIDATORS[keyword]
    plain_impl = Draft4Validator.VALIDATORS[keyword]

    def impl(validator: Any, subschemas: Any, instance: Any, schema: dict[str, Any]) -> Any:
        # The contents API's oneOf has a discriminator mapping "array" ->
        # content-directory, but a directory listing is a JSON *array*, which
        # has no discriminating property. Discriminators only make sense for
        # objects, so fall back to plain oneOf/anyOf for anything else.
        if "discriminator" in schema and not isinstance(instance, dict):
            yield from plain_impl(validator, subschemas, instance, schema)
        else:
            yield from oas_impl(validator, subschemas, instance, schema)

    return impl


GitHubSchemaValidator = extend(
    OAS30Validator,
    validators={"enum": _nullable_enum, "oneOf": _discriminated("oneOf"), "anyOf": _discriminated("anyOf")},
)

_spec_cache: dict[str, Any] | None = None
_spec_lock = threading.Lock()


def load_spec() -> dict[str, Any]:
    """Parse the OpenAPI description once per process and return it (shared, do not mutate)."""
    global _spec_cache
    if _spec_cache is None:
        with _spec_lock:
            if _spec_cache is None:
                if not SPEC_PATH.exists():
                    raise FileNotFoundError(
                        f"{SPEC_PATH} is missing; run `npm install` in {FAKES_DIR}"
                    )
                with SPEC_PATH.open("rb") as fh:
                    _spec_cache = json.load(fh)
    return _spec_cache
