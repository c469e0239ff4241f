"""Running a GraphQL request: static validation of the selections, execution against the
resolvers (errors per field, like GitHub), and the ``POST /graphql`` endpoint."""

from __future__ import annotations

from typing import Any, Callable

from ..models import Installation
from ..routing import Reply, RequestContext, route
from ..state import GitHubState
from .parser import GraphQLSyntaxError, _GqlField, _GqlParser, _substitute
from .resolvers import GraphQLFieldError, _cursor, _gql_types, _GqlCtx


GRAPHQL_DOCS = "https://docs.github.com/graphql"


_GQL_TYPES: dict[str, dict[str, tuple[str, Callable[..., Any]]]] | None = None
# Interfaces and the object types that implement them (an inline fragment must name one of these).
_POSSIBLE = {"GitObject": {"Blob", "Commit", "Tree", "Tag"}}


def _concrete(type_name: str, obj: Any) -> str:
    """An interface's value carries its own type name (``__typename``)."""
    if type_name in _POSSIBLE and isinstance(obj, dict):
        return obj["__typename"]
    return type_name


def _execute_field_set(type_name: str, obj: Any, selections: list[_GqlField], ctx: _GqlCtx,
                       path: list[Any]) -> dict[str, Any]:
    assert _GQL_TYPES is not None
    out: dict[str, Any] = {}
    for f in selections:
        fpath = path + [f.alias]
        if f.name == "...":  # an inline fragment: its fields when the value is of its type
            if f.args["on"] in (type_name, _concrete(type_name, obj)):
                out.update(_execute_field_set(f.args["on"], obj, f.selections, ctx, path))
            continue
        if f.name == "__typename" and f.name not in _GQL_TYPES.get(type_name, {}):
            out[f.alias] = _concrete(type_name, obj)
            continue
        try:
            out[f.alias] = _execute_field(type_name, obj, f, ctx, fpath)
        except GraphQLFieldError as exc:
            err: dict[str, Any] = {"message": str(exc), "locations": [{"line": f.line, "column": f.column}],
                                   "path": fpath}
            if exc.type:
                err["type"] = exc.type
            ctx.errors.append(err)
            if exc.violation:
                ctx.state.violations.append(f"graphql: {exc}")
            out[f.alias] = None
    return out


def _execute_field(type_name: str, obj: Any, f: _GqlField, ctx: _GqlCtx, path: list[Any]) -> Any:
    assert _GQL_TYPES is not None
    if type_name.endswith("Connection"):
        if f.name in ("totalCount", "pageInfo"):
            v = obj[f.name]
            return {g.alias: v[g.name] for g in f.selections} if f.name == "pageInfo" else v
        node_type = type_name.removesuffix("Connection")
        if f.name == "nodes":
            return [_execute_field_set(node_type, item, f.selections, ctx, path + [i])
                    for i, (_, item) in enumerate(obj["_items"])]
        if f.name == "edges":
            return [_execute_field_set(node_type + "Edge", (idx, item), f.selections, ctx, path + [i])
                    for i, (idx, item) in enumerate(obj["_items"])]
        raise GraphQLFieldError(f"Field '{f.name}' doesn't exist on type '{type_name}'")
    if type_name.endswith("Edge"):
        idx, item = obj
        if f.name == "cursor":
            return _cursor(idx)
        if f.name == "node":
            return _execute_field_set(type_name.removesuffix("Edge"), item, f.selections, ctx, path)
        raise GraphQLFieldError(f"Field '{f.name}' doesn't exist on type '{type_name}'")
    spec = _GQL_TYPES[type_name].get(f.name)
    if spec is None:
        raise GraphQLFieldError(f"Field '{f.name}' doesn't exist on type '{type_name}'")
    ret_type, resolver = spec
    value = resolver(obj, _substitute(f.args, ctx.variables), ctx)
    if value is None or ret_type in ("String", "Int", "Boolean"):
        return value
    return _execute_field_set(ret_type, value, f.selections, ctx, path) if not ret_type.endswith("Connection") \
        else _execute_connection(ret_type, value, f, ctx, path)


def _execute_connection(type_name: str, conn: dict[str, Any], f: _GqlField, ctx: _GqlCtx,
                        path: list[Any]) -> dict[str, Any]:
    return {g.alias: _execute_field(type_name, conn, g, ctx, path + [g.alias]) for g in f.selections}


def _validate_selections(type_name: str, selections: list[_GqlField], path: list[str]) -> list[dict[str, Any]]:
    """Static check of field names (GitHub rejects the whole document before running anything)."""
    assert _GQL_TYPES is not None
    errors = []
    for f in selections:
        if f.name == "__typename":
            continue
        if f.name == "...":
            on = f.args["on"]
            if on != type_name and on not in _POSSIBLE.get(type_name, ()):
                errors.append({"path": path + [f.alias], "locations": [{"line": f.line, "column": f.column}],
                               "message": f"Fragment on {on} can't be spread inside {type_name}"})
            else:
                errors.extend(_validate_selections(on, f.selections, path + [f.alias]))
            continue
        if type_name.endswith("Connection"):
            node_type = type_name.removesuffix("Connection")
            child = {"nodes": node_type, "edges": node_type + "Edge", "pageInfo": "PageInfo",
                     "totalCount": "Int"}.get(f.name)
        elif type_name.endswith("Edge"):
            child = {"cursor": "String", "node": type_name.removesuffix("Edge")}.get(f.name)
        elif type_name == "PageInfo":
            child = "Boolean" if f.name in ("hasNextPage", "hasPreviousPage") else \
                "String" if f.name in ("startCursor", "endCursor") else None
        else:
            spec = _GQL_TYPES.get(type_name, {}).get(f.name)
            child = spec[0] if spec else None
        if child is None:
            errors.append({"path": path + [f.alias], "extensions": {"code": "undefinedField", "typeName": type_name,
                                                                    "fieldName": f.name},
                           "locations": [{"line": f.line, "column": f.column}],
                           "message": f"Field '{f.name}' doesn't exist on type '{type_name}'"})
            continue
        scalar = child in ("String", "Int", "Boolean")
        if scalar and f.selections:
            errors.append({"path": path + [f.alias], "locations": [{"line": f.line, "column": f.column}],
                           "message": f"Selections can't be made on scalars (field '{f.name}' returns {child})"})
        elif not scalar and not f.selections:
            errors.append({"path": path + [f.alias], "locations": [{"line": f.line, "column": f.column}],
                           "message": f"Field must have selections (field '{f.name}' returns {child} but has no "
                                      "selections.)"})
        elif not scalar:
            errors.extend(_validate_selections(child, f.selections, path + [f.alias]))
    return errors


def execute_graphql(st: GitHubState, installation: Installation | None, query: str, variables: dict[str, Any] | None,
                    operation_name: str | None = None) -> dict[str, Any]:
    """Run one GraphQL request; returns GitHub's response document ({"data": ...} and/or {"errors": [...]})."""
    global _GQL_TYPES
    if _GQL_TYPES is None:
        _GQL_TYPES = _gql_types()
    try:
        ops = _GqlParser(query).document()
    except GraphQLSyntaxError as exc:
        st.violations.append(f"graphql: {exc}")
        return {"errors": [{"message": str(exc), "locations": [{"line": exc.line, "column": exc.column}]}]}
    op = next((o for o in ops if o[1] == operation_name), None) if operation_name else ops[0]
    if op is None:
        st.violations.append(f"graphql: unknown operationName {operation_name!r}")
        return {"errors": [{"message": f"No operation named \"{operation_name}\""}]}
    kind, name, defaults, selections = op
    root = "Mutation" if kind == "mutation" else "Query"
    errors = _validate_selections(root, selections, [kind + (f" {name}" if name else "")])
    if errors:
        st.violations.extend(f"graphql: {e['message']} (at {'.'.join(map(str, e['path']))})" for e in errors)
        return {"errors": errors}
    ctx = _GqlCtx(st, installation, {**defaults, **(variables or {})})
    data = _execute_field_set(root, None, selections, ctx, [])
    return {"data": data, "errors": ctx.errors} if ctx.errors else {"data": data}


@route("POST", "/graphql")
def graphql(ctx: RequestContext) -> Reply:
    body = ctx.json if isinstance(ctx.json, dict) else {}
    query = body.get("query")
    if not isinstance(query, str):
        return Reply(200, {"errors": [{"message": "A query attribute must be specified and must be a string."}]})
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return Reply(200, {"errors": [{"message": "Variables are invalid JSON."}]})
    return Reply(200, execute_graphql(ctx.state, ctx.installation, query, variables, body.get("operationName")))
