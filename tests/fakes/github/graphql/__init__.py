"""GraphQL: the subset the review-thread work needs.

A small real GraphQL front end (tokenizer, parser for operations, variables, aliases, arguments
and nested selections: ``parser``) over a hand-written schema (``resolvers``), run by
``executor``, so responses carry exactly the fields that were asked for, like GitHub's.
Fragments are not supported; unknown fields answer GitHub's validation error and are recorded
as violations. Importing this package registers ``POST /graphql``.
"""

from .executor import GRAPHQL_DOCS, execute_graphql
from .parser import GraphQLSyntaxError
from .resolvers import GraphQLFieldError

__all__ = ["GRAPHQL_DOCS", "GraphQLFieldError", "GraphQLSyntaxError", "execute_graphql"]
