"""Check HTTP traffic against GitHub's published OpenAPI description.

The description comes from the npm package ``@octokit/openapi`` (pinned in
``tests/fakes/package.json``; run ``npm install`` in ``tests/fakes``). It is the
same document Octokit generates its clients from, so if a request passes here
it has the shape api.github.com documents.

Used for two things:

* requests the app sends to the fake are checked, so a typo'd path, a missing
  required field or a wrong enum value is caught in tests instead of in
  production;
* the fake's own responses are checked, so the fake cannot drift into
  answering with shapes GitHub never sends.

Violations are returned as human-readable strings rather than raised: the fake
records them and keeps answering like GitHub would, and the tests assert on the
collected list at the end.

Implementation notes (why it looks like this):

* The 13 MB JSON is parsed once per process (~0.1-0.15 s) and cached at module
  level; the app's web and worker subprocesses never load it, only the process
  that runs the fake does.
* Schemas are validated with ``openapi_schema_validator.OAS30Validator`` (the
  spec is OpenAPI 3.0.3: ``nullable``, ``discriminator`` ...). The whole spec is
  registered as a ``referencing`` resource under ``urn:gh`` and each schema is
  validated through ``{"$ref": "urn:gh#/<json pointer>"}``; the spec's internal
  ``#/components/...`` refs then resolve against ``urn:gh``. A plain ``""``
  base URI does not work (``PointerToNowhere``), and pointing into the
  registered document avoids rewriting every ``$ref`` in 13 MB of JSON.
* ``POST /graphql`` is not part of the REST description; it is accepted as a
  known endpoint whose body must be an object with a string ``query``.

Layout: ``spec.py`` (the description, loaded once; the schema validator's fixes), ``paths.py``
(path templates), ``validator.py`` (OpenAPIValidator). The names below are re-exported so
``from tests.fakes.openapi import ...`` keeps working.
"""

from .paths import PathTemplate, compile_template
from .spec import FAKES_DIR, GENERIC_STATUSES, HTTP_METHODS, SPEC_PATH, SPEC_URI, GitHubSchemaValidator, load_spec
from .validator import OpenAPIValidator, OperationMatch

__all__ = [
    "FAKES_DIR", "GENERIC_STATUSES", "HTTP_METHODS", "SPEC_PATH", "SPEC_URI", "GitHubSchemaValidator",
    "OpenAPIValidator", "OperationMatch", "PathTemplate", "compile_template", "load_spec",
]
