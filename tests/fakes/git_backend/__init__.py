"""Real git repositories behind FakeGitHub: bare repos on disk, plumbing helpers, smart HTTP.

Why it is built this way:

* Each fake repository is a *bare* git repository under a temp dir owned by the
  fake (``<root>/<owner>/<repo>.git``, lower-cased like GitHub's
  case-insensitive names). Content, blob/tree/commit SHAs, branches and
  history are therefore real, and a real ``git clone``/``git push`` works.
* Commits made by the fake itself (initial content, the contents API, a
  "human" push) are written with plumbing and a throw-away index
  (``read-tree`` / ``update-index --index-info`` / ``write-tree`` /
  ``commit-tree``) and published with a compare-and-swap ``update-ref``, so
  no working tree is needed and a concurrent push cannot be silently lost.
* git runs with an isolated environment (``HOME`` inside the temp dir, no
  system/global config) so a developer's ``~/.gitconfig`` (signing, hooks,
  ``init.defaultBranch``) cannot change what the fake does.
* Smart HTTP is ``git http-backend`` run as a CGI program: the fake's aiohttp
  handler passes the request through and parses the CGI answer. Push
  commands are parsed from the receive-pack request (pkt-lines) so the fake
  can record which refs a push changed.

Layout: ``bare_repo.py`` (BareRepo), ``plumbing.py`` (environment, errors, records, the
protection hook), ``smart_http.py`` (``git http-backend`` as CGI, receive-pack commands). The
names below are re-exported so ``from tests.fakes.git_backend import ...`` keeps working.
"""

from .bare_repo import BareRepo
from .plumbing import (
    DEFAULT_AUTHOR,
    PROTECTION_HOOK,
    ZERO_SHA,
    CommitInfo,
    FileChange,
    GitError,
    TreeEntry,
    isolated_env,
)
from .smart_http import (
    HTTP_BACKEND_TIMEOUT,
    CgiResponse,
    parse_cgi_output,
    parse_receive_pack_commands,
    run_http_backend,
)

__all__ = [
    "DEFAULT_AUTHOR", "HTTP_BACKEND_TIMEOUT", "PROTECTION_HOOK", "ZERO_SHA", "BareRepo", "CgiResponse", "CommitInfo",
    "FileChange", "GitError", "TreeEntry", "isolated_env", "parse_cgi_output", "parse_receive_pack_commands",
    "run_http_backend",
]
