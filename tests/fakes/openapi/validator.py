"""OpenAPIValidator: requests and responses checked against GitHub's REST description, each
problem returned as a human-readable string."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from .paths import PathTemplate, compile_template
from .spec import HTTP_METHODS, GENERIC_STATUSES, SPEC_URI, GitHubSchemaValidator, load_spec


@dataclass
class OperationMatch:
    template: str
    method: str
    operation: dict[str, Any]
    pointer: str  # JSON pointer of the operation object inside the spec
    path_params: dict[str, str]


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _format_error(err: Any) -> str:
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{where or '<root>'}: {err.message}"


# A stand-in "operation" for GraphQL so that POST /graphql is a known endpoint.
_GRAPHQL_SCHEMA = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {"type": "string"}, "variables": {"type": "object", "nullable": True}},
}


class OpenAPIValidator:
    """Validate requests/responses against GitHub's REST description.

    Cheap to construct after the first time: the parsed spec, compiled path
    templates and per-schema validators are shared between instances.
    """

    _shared: dict[int, tuple[list[PathTemplate], Registry]] = {}
    _validators: dict[str, Any] = {}
    _result_cache: dict[tuple[str, str], list[str]] = {}
    _shared_lock = threading.Lock()

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec if spec is not None else load_spec()
        key = id(self.spec)
        with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = (self._compile_paths(), Registry().with_resource(SPEC_URI, Resource(self.spec, DRAFT4)))
        self._templates, self._registry = self._shared[key]

    # -- spec navigation ---------------------------------------------------

    def _deref(self, obj: Any, pointer: str) -> tuple[Any, str]:
        """Follow local ``$ref`` chains; returns the target and its JSON pointer."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj and seen < 20:
            ref = obj["$ref"]
            if not ref.startswith("#/"):
                break
            pointer = ref[1:]
            obj = self._resolve_pointer(pointer)
            seen += 1
        return obj, pointer

    def _params(self, path_item: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
        """Path-level and operation-level parameters, refs resolved (operation wins)."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for p in list(path_item.get("parameters", [])) + list(operation.get("parameters", [])):
            p, _ = self._deref(p, "")
            out[(p.get("in", ""), p.get("name", ""))] = p
        return list(out.values())

    def _compile_paths(self) -> list[PathTemplate]:
        templates = []
        for template, item in self.spec["paths"].items():
            multi: set[str] = set()
            for method, op in item.items():
                if method not in HTTP_METHODS:
                    continue
                for p in self._params(item, op):
                    if p.get("in") == "path" and p.get("x-multi-segment"):
                        multi.add(p["name"])
            templates.append(compile_template(template, multi))
        templates.sort(key=lambda t: t.specificity, reverse=True)
        return templates

    def match_path(self, path: str) -> list[tuple[PathTemplate, dict[str, str]]]:
        """All templates matching ``path`` (raw, percent-encoded), most literal first."""
        path = path.split("?", 1)[0]
        return [(t, params) for t in self._templates if (params := t.match(path)) is not None]

    def find_operation(self, method: str, path: str) -> OperationMatch | None:
        method = method.lower()
        for template, params in self.match_path(path):
            item = self.spec["paths"][template.template]
            if method in item:
                pointer = f"/paths/{_escape_pointer(template.template)}/{method}"
                return OperationMatch(template.template, method, item[method], pointer, params)
        return None

    # -- schema validation -------------------------------------------------

    def _validator(self, pointer: str) -> Any:
        v = self._validators.get(pointer)
        if v is None:
            v = GitHubSchemaValidator(
                {"$ref": f"{SPEC_URI}#{pointer}"},
                registry=self._registry,
                format_checker=oas30_format_checker,
            )
            self._validators[pointer] = v
        return v

    def validate_schema(self, pointer: str, instance: Any, *, limit: int = 10) -> list[str]:
        """Validate ``instance`` against the schema at JSON ``pointer`` in the spec."""
        errors = sorted(self._validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path))
        msgs = [_format_error(e) for e in errors[:limit]]
        if len(errors) > limit:
            msgs.append(f"... and {len(errors) - limit} more")
        return msgs

    def _validate_cached(self, pointer: str, instance: Any) -> list[str]:
        """``validate_schema`` memoised on the instance's JSON.

        List endpoints return the same objects again and again (every page
        fetch re-sends each comment); validating a full comment costs ~0.5 ms,
        so re-validating 100 of them per page made the fake the bottleneck.
        """
        key = (pointer, json.dumps(instance, sort_keys=True, default=str))
        hit = self._result_cache.get(key)
        if hit is None:
            if len(self._result_cache) > 20_000:
                self._result_cache.clear()
            hit = self._result_cache[key] = self.validate_schema(pointer, instance)
        return hit

    def _validate_response_body(self, pointer: str, body: Any) -> list[str]:
        schema, _ = self._deref(self._resolve_pointer(pointer), pointer)
        # Arrays of objects are validated item by item, so unchanged items hit the cache.
        if isinstance(body, list) and isinstance(schema, dict) and schema.get("type") == "array" and "items" in schema:
            out: list[str] = []
            for i, item in enumerate(body):
                out.extend(f"{i}/{m}" for m in self._validate_cached(f"{pointer}/items", item))
                if len(out) >= 10:
                    break
            return out
        return self._validate_cached(pointer, body)

    def _resolve_pointer(self, pointer: str) -> Any:
        obj: Any = self.spec
        for tok in pointer.lstrip("/").split("/"):
            tok = tok.replace("~1", "/").replace("~0", "~")
            obj = obj[int(tok)] if isinstance(obj, list) else obj[tok]
        return obj

    def validate_component(self, name: str, instance: Any) -> list[str]:
        """Validate against ``#/components/schemas/<name>`` (handy in tests)."""
        return self.validate_schema(f"/components/schemas/{_escape_pointer(name)}", instance)

    @staticmethod
    def _json_media(content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if "application/json" in content:
            return "application/json", content["application/json"]
        for media, obj in content.items():
            if "json" in media:
                return media, obj
        return None

    # -- public API ----------------------------------------------------------

    def check_request(self, method: str, path: str, query: dict[str, Any] | None, body: object | None) -> list[str]:
        """Violations of one request: unknown endpoint, bad path/query parameters, bad JSON body.

        ``path`` may be raw (percent-encoded) and may still carry a query string
        (ignored). ``body`` is the decoded JSON, or None when there was none.
        """
        params, body_errors = self.check_request_parts(method, path, query, body)
        return params + body_errors

    def check_request_parts(
        self, method: str, path: str, query: dict[str, Any] | None, body: object | None
    ) -> tuple[list[str], list[str]]:
        """Like ``check_request`` but split into (endpoint/parameter violations, body violations).

        The fake answers 422 only for body violations, as GitHub does.
        """
        method_u = method.upper()
        path_only = path.split("?", 1)[0]
        where = f"{method_u} {path_only}"
        query = dict(query or {})

        if path_only == "/graphql":
            if method_u != "POST":
                return [f"{where}: GraphQL only accepts POST"], []
            errs = list(OAS30Validator(_GRAPHQL_SCHEMA).iter_errors(body))
            return [], [f"{where}: request body {_format_error(e)}" for e in errs]

        op = self.find_operation(method_u, path_only)
        if op is None:
            if self.match_path(path_only):
                return [f"{where}: method {method_u} is not documented for this path"], []
            return [f"{where}: path is not in GitHub's REST API description"], []

        where = f"{method_u} {op.template}"
        violations: list[str] = []
        item = self.spec["paths"][op.template]
        params = self._params(item, op.operation)

        for p in params:
            loc, name = p.get("in"), p.get("name")
            schema, _ = self._deref(p.get("schema", {}), "")
            if loc == "path":
                value = op.path_params.get(re.sub(r"\W", "_", name))
                if value is not None and not _param_ok(schema, value):
                    violations.append(f"{where}: path parameter {name}={value!r} is not a valid {schema.get('type')}")
            elif loc == "query":
                if name in query:
                    if not _param_ok(schema, query[name]):
                        violations.append(f"{where}: query parameter {name}={query[name]!r} does not match {_describe(schema)}")
                elif p.get("required"):
                    violations.append(f"{where}: required query parameter {name!r} is missing")
        known_query = {p.get("name") for p in params if p.get("in") == "query"}
        for name in query:
            if name not in known_query:
                violations.append(f"{where}: query parameter {name!r} is not documented")

        rb = op.operation.get("requestBody")
        if rb is None:
            if body not in (None, {}, b"", ""):
                violations.append(f"{where}: sends a body but the operation takes none")
            return violations, []
        rb, rb_pointer = self._deref(rb, op.pointer + "/requestBody")
        if body is None:
            if rb.get("required"):
                return violations, [f"{where}: request body is required"]
            return violations, []
        media = self._json_media(rb.get("content", {}))
        if media is None or "schema" not in media[1]:
            return violations, []
        schema_pointer = f"{rb_pointer}/content/{_escape_pointer(media[0])}/schema"
        return violations, [f"{where}: request body {m}" for m in self.validate_schema(schema_pointer, body)]

    def check_response(self, method: str, path: str, status: int, body: object | None) -> list[str]:
        """Violations of one response: status not documented, or JSON body not matching its schema.

        ``body`` is the decoded JSON (None for an empty body, e.g. 204).
        Statuses in ``GENERIC_STATUSES`` are never reported as undocumented.
        """
        method_u = method.upper()
        path_only = path.split("?", 1)[0]
        if path_only == "/graphql":
            return []
        op = self.find_operation(method_u, path_only)
        if op is None:
            return []  # the request check already reported the unknown endpoint
        where = f"{method_u} {op.template} -> {status}"
        responses = op.operation.get("responses", {})
        resp = responses.get(str(status))
        pointer = f"{op.pointer}/responses/{status}"
        if resp is None and "default" in responses:
            resp, pointer = responses["default"], f"{op.pointer}/responses/default"
        if resp is None:
            if status in GENERIC_STATUSES:
                if status >= 400 and body is not None:
                    return [f"{where}: {m}" for m in self.validate_component("basic-error", body)]
                return []
            documented = ", ".join(sorted(responses))
            return [f"{where}: status {status} is not documented (documented: {documented})"]
        resp, pointer = self._deref(resp, pointer)
        content = resp.get("content")
        if not content:
            if body not in (None, b"", ""):
                return [f"{where}: response has a body but the spec documents none"]
            return []
        media = self._json_media(content)
        if media is None or "schema" not in media[1]:
            return []
        if body is None:
            return [f"{where}: response body is missing"]
        schema_pointer = f"{pointer}/content/{_escape_pointer(media[0])}/schema"
        return [f"{where}: response body {m}" for m in self._validate_response_body(schema_pointer, body)]


def _describe(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return f"one of {schema['enum']}"
    return str(schema.get("type", "schema"))


def _param_ok(schema: dict[str, Any], value: Any) -> bool:
    """Loose check of a string-encoded path/query parameter against its schema."""
    if isinstance(value, list):  # repeated query parameter
        return all(_param_ok(schema, v) for v in value)
    value = str(value)
    typ = schema.get("type")
    if "enum" in schema and typ != "boolean":
        return value in [str(e) for e in schema["enum"]]
    if typ == "integer":
        return re.fullmatch(r"-?\d+", value) is not None
    if typ == "number":
        try:
            float(value)
        except ValueError:
            return False
        return True
    if typ == "boolean":
        return value in ("true", "false", "1", "0")
    return True
