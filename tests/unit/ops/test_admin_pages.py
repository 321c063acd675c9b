"""The admin page shows record text inert, as the CLI does (issue 17: forged DLQ records)."""

from __future__ import annotations

from ops.admin.pages import _env

# U+202E reverses what follows; ESC [2J clears a terminal (harmless in HTML, escaped anyway).
FORGED = "Boom\u202edevorppa\u202c \u2066x\u2069 \x1b[2J"


def test_bidirectional_and_control_characters_are_escaped_in_every_expression() -> None:
    html = _env.from_string("<td>{{ error }}</td><pre>{{ payload }}</pre>{{ n }}").render(
        error=FORGED, payload="line 1\nline 2\u202e", n=3
    )
    assert not any(c in html for c in "\u202a\u202c\u202e\u2066\u2069\x1b"), html
    assert "\\u202edevorppa" in html and "\\x1b[2J" in html
    assert "line 1\nline 2\\u202e" in html and html.endswith("3")


def test_html_is_still_escaped_and_macro_output_is_not_escaped_twice() -> None:
    template = _env.from_string(
        "{% macro cell(v) %}<td>{{ v }}</td>{% endmacro %}{{ cell('<b>\u202e') }}"
    )
    assert template.render() == "<td>&lt;b&gt;\\u202e</td>"
