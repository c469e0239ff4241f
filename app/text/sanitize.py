"""Untrusted text (issue titles and bodies, review feedback) made safe to put in a prompt.

What a person sees on GitHub is what the model reads: text GitHub does not render is removed,
so nobody can hide instructions from the people who approve the plan.

* HTML comments (`<!-- ... -->`, and an unclosed `<!--` to the end, as GitHub hides it) go.
* Invisible characters go: zero-width and bidi controls, the BOM, soft hyphens, Unicode "tag"
  characters (U+E0000 block, used to smuggle ASCII past readers), variation selectors, and
  control characters other than newline and tab.
* omoi's own data delimiters (`<issue>`, `<feedback>`, `<answer(s)>`, `<findings>`, open or closed) are escaped, so
  the text cannot close its data section and continue as if it were omoi speaking.

Pure functions: no I/O, no configuration.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["sanitize_untrusted", "sanitize_inline"]

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# Delimiters used by templates/prompts/*.j2 around people's text; fullwidth and small brackets too.
_DELIMITER = re.compile(r"[<\uff1c\ufe64](\s*/?\s*(?:issue|feedback|answers?|findings)\b)", re.IGNORECASE)
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")


def _visible(ch: str) -> bool:
    if ch in "\n\t":
        return True
    # Cf: format characters (zero-width, bidi controls, BOM, soft hyphen, tags); Cc: controls;
    # Co/Cs: private use and lone surrogates, which render as nothing meaningful.
    return unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cs")


def sanitize_untrusted(text: object, max_chars: int | None = None) -> str:
    """`text` as GitHub shows it, with nothing hidden and no way out of its data tags."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _COMMENT.sub("", s)
    s = _VARIATION_SELECTORS.sub("", s)
    s = "".join(ch for ch in s if _visible(ch))
    s = _COMMENT.sub("", s)  # a comment opener split by invisible characters is whole now
    s = _DELIMITER.sub(r"&lt;\1", s)
    if max_chars is not None and len(s) > max_chars:
        s = s[:max_chars]
    return s


def sanitize_inline(text: object, max_chars: int = 400) -> str:
    """A one-line value (an issue title) for an attribute or quotes in a prompt."""
    s = sanitize_untrusted(text)
    s = " ".join(s.split())
    s = s.replace("<", "&lt;").replace(">", "&gt;").replace('"', "'")
    return s[:max_chars]
