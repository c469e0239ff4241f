"""app.commands.grammar: what is a command in a comment (pure, no I/O): the prefix and mentions,
lines, Markdown structure (fences, quotes, HTML comments), Unicode (NFKC, invisible and bidi
characters), and properties that hold for any text. Arguments: tests/unit/test_command_arguments.py."""

import re
import unicodedata

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.commands.grammar import (
    MAX_COMMANDS,
    MAX_TEXT_CHARS,
    Command,
    InvalidCommand,
    parse_commands,
)
from tests.support.grammar import one, verbs


# --- basics -----------------------------------------------------------------


def test_empty_and_none():
    assert parse_commands(None) == []
    assert parse_commands("") == []
    assert parse_commands("   \n\n") == []
    assert parse_commands("just a comment, no commands") == []


def test_simple_command_has_line_and_raw():
    body = "Looks good to me.\n\n/omoi approve\n"
    cmd = one(body)
    assert cmd == Command("approve", {"stage": None, "revision": None}, "/omoi approve", 3)


def test_bare_prefix_is_help():
    assert one("/omoi") == Command("help", {}, "/omoi", 1)
    assert one("@omoi   ").verb == "help"


def test_mixed_case():
    cmd = one("/OMOI Approve DESIGN R2")
    assert cmd.verb == "approve"
    assert cmd.args == {"stage": "design", "revision": 2}


def test_several_commands_in_order():
    body = "/omoi status\nsome prose\n/omoi approve tasks\r\n@omoi budget +5"
    result = parse_commands(body)
    assert [(c.verb, c.line) for c in result] == [("status", 1), ("approve", 3), ("budget", 4)]


def test_cap_on_number_of_commands():
    body = "\n".join(["/omoi status"] * 50)
    assert len(parse_commands(body)) == MAX_COMMANDS


def test_mention_forms_and_configurable_names():
    assert verbs("@omoi status") == ["status"]
    assert verbs("@omoi[bot] status") == ["status"]
    assert verbs("/omoi[bot] status") == []  # [bot] is a mention suffix only
    names = ("omoi", "omoi-dev")
    assert verbs("@omoi-dev plan\n/omoi-dev status\n/omoi help", bot_names=names) == ["plan", "status", "help"]
    assert verbs("@omoi-dev plan") == []  # not configured
    assert verbs("/omoi status", bot_names=()) == []
    assert verbs("/omoi status", bot_names="omoi") == ["status"]  # a lone string is tolerated


def test_prefix_must_be_followed_by_space():
    assert parse_commands("/omoiapprove") == []
    assert parse_commands("@omoi, please approve this") == []
    assert parse_commands("/omoi-bot approve") == []


def test_mid_line_mention_is_not_a_command():
    assert parse_commands("Once happy, type /omoi approve to continue.") == []
    assert parse_commands("- /omoi approve") == []
    assert parse_commands("`/omoi approve`") == []


def test_leading_spaces_and_indented_code():
    assert verbs("   /omoi status") == ["status"]
    assert parse_commands("    /omoi status") == []
    assert parse_commands("\t/omoi status") == []
    # Indented code must follow a blank line; after prose it's a continuation
    # line, which cannot start a command either.
    assert parse_commands("prose\n    /omoi status") == []


def test_windows_and_old_mac_line_endings():
    body = "hello\r\n/omoi status\r\n```\r\n/omoi approve\r\n```\r\n/omoi plan\r/omoi pause"
    assert [(c.verb, c.line) for c in parse_commands(body)] == [("status", 2), ("plan", 6), ("pause", 7)]
    assert one("/omoi approve design\r\n").args["stage"] == "design"


# --- Markdown structure -----------------------------------------------------


def test_backtick_fence():
    body = "```\n/omoi approve\n```\n/omoi status"
    assert verbs(body) == ["status"]


def test_tilde_fence_with_info_string():
    body = "~~~ text\n/omoi approve\n~~~\n/omoi status"
    assert verbs(body) == ["status"]


def test_longer_fence_needs_longer_close():
    body = "`````python\n/omoi approve\n```\n/omoi plan\n`````\n/omoi status"
    assert verbs(body) == ["status"]


def test_fence_closed_only_by_same_char():
    body = "```\n~~~\n/omoi approve\n```\n/omoi status"
    assert verbs(body) == ["status"]


def test_unclosed_fence_runs_to_end():
    assert parse_commands("/omoi status\n```\n/omoi approve\n/omoi plan") == [
        Command("status", {}, "/omoi status", 1)
    ]


def test_indented_fence_and_inline_code_line():
    assert parse_commands("   ```\n/omoi approve\n   ```") == []
    # ```foo``` is inline code, so it opens no fence
    assert verbs("```inline```\n/omoi status") == ["status"]


def test_fence_structure_is_read_from_raw_text():
    # A zero-width space before ``` means GitHub does not see a closing fence,
    # so the command stays inside the code block.
    assert parse_commands("```\n\u200b```\n/omoi approve\n```") == []
    # Likewise a fullwidth "fence" is ordinary text for GitHub.
    assert verbs("\uff40\uff40\uff40\n/omoi status") == ["status"]


def test_block_quotes():
    assert parse_commands("> /omoi approve") == []
    assert parse_commands("   > /omoi approve") == []
    assert parse_commands(">/omoi approve") == []
    assert verbs("> you said:\n\n/omoi status") == ["status"]


def test_nested_quote():
    assert parse_commands("> > /omoi approve\n>> /omoi plan") == []


def test_lazy_quote_continuation_is_ignored():
    # GitHub renders the second line inside the quote.
    assert parse_commands("> quoted text\n/omoi approve") == []
    assert verbs("> quoted text\n\n/omoi approve") == ["approve"]
    # ...but a fence still interrupts the quote and opens a code block.
    assert parse_commands("> quoted\n```\n\n/omoi approve\n```") == []


def test_html_comments():
    assert parse_commands("<!-- /omoi approve -->") == []
    assert parse_commands("<!--\n/omoi approve\n-->") == []
    assert verbs("<!--\n/omoi approve\n-->\n/omoi status") == ["status"]
    assert verbs("text <!-- start\n/omoi approve\nend -->\n/omoi status") == ["status"]
    assert parse_commands("<!-- never closed\n/omoi approve\n\n/omoi plan") == []


def test_html_comment_text_is_not_an_argument():
    cmd = one("/omoi revise use <!-- secret --> Postgres")
    assert cmd.args == {"text": "use  Postgres"}


def test_comment_markers_inside_fence_are_plain_text():
    assert verbs("```\n<!--\n```\n/omoi status\n-->") == ["status"]


# --- Unicode ----------------------------------------------------------------


def test_fullwidth_nfkc():
    assert verbs("\uff0fomoi approve") == ["approve"]  # ／omoi
    assert verbs("\uff0f\uff4f\uff4d\uff4f\uff49\u3000\uff53\uff54\uff41\uff54\uff55\uff53") == ["status"]


def test_zero_width_is_stripped_so_the_visible_command_counts():
    # Decision: what renders as "/omoi approve" *is* "/omoi approve".
    assert verbs("/o\u200bmoi approve") == ["approve"]
    assert verbs("\ufeff/omoi status") == ["status"]
    assert verbs("/omoi ap\u00adprove") == ["approve"]


def test_bidi_controls_are_stripped():
    assert verbs("\u202e/omoi status") == ["status"]
    cmd = one("/omoi revise \u2067make it\u2069 faster")
    assert cmd.args == {"text": "make it faster"}
    assert "\u2067" not in cmd.raw


def test_non_breaking_spaces_count_as_spaces():
    assert one("/omoi\u00a0approve\u00a0design").args == {"stage": "design", "revision": None}
    assert verbs("\u00a0/omoi status") == ["status"]


# --- properties ---------------------------------------------------------------

# Fragments that exercise the grammar far more often than uniform text would.
_FRAGMENTS = st.sampled_from(
    [
        "/omoi ", "@omoi ", "/OMOI ", "approve", " design", " r2", "revise ", "budget +5",
        "\n", "\r\n", "\r", "   ", "    ", "\t", "```", "~~~", "`", ">", "<!--", "-->",
        "\u200b", "\u202e", "\u00a0", "\uff0f", "ask why", "\n\n",
    ]
)
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=40).map("".join)


def _split(text):
    return re.split(r"\r\n|\r|\n", text)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_never_raises_and_results_are_well_formed(text):
    result = parse_commands(text)
    assert len(result) <= MAX_COMMANDS
    n_lines = len(_split(text))
    for cmd in result:
        assert isinstance(cmd, (Command, InvalidCommand))
        assert 1 <= cmd.line <= n_lines
        assert len(cmd.raw) <= MAX_TEXT_CHARS


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.sampled_from(["`", "~"]), st.integers(min_value=3, max_value=6), st.text(max_size=10))
def test_nothing_inside_a_fence_is_a_command(inner, char, length, info):
    # Keep the inner text from closing the fence, and the info string valid.
    assume(char not in unicodedata.normalize("NFKC", inner))
    # An info string starting with the fence character would only make the fence longer
    # (then a closing fence of `length` is too short, correctly), so keep it out.
    info = re.sub(r"[\r\n`]", "", info).lstrip(char)
    fence = char * length
    body = f"{fence}{info}\n{inner}\n{fence}\n/omoi status"
    result = parse_commands(body)
    assert [c.verb for c in result] == ["status"]


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.sampled_from([">", "> ", "   >", "> > "]))
def test_nothing_inside_a_quote_is_a_command(inner, marker):
    body = "\n".join(marker + line for line in _split(inner))
    assert parse_commands(body) == []
    assert [c.verb for c in parse_commands(body + "\n\n/omoi status")] == ["status"]
