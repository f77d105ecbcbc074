"""Text from users, shown as text: nothing in it can drive the terminal that prints it.

A user writes their own `name` (and other attributes), and Cognito keeps control characters
in it. Printed raw, `\\x1b]8;;http://evil.example\\x1b\\\\CLICK` is a hyperlink, `\\x1b[31m` a
colour, U+202E turns the rest of the line right to left and a newline draws a row of its own
in a table. Every human-readable output passes user text through `visible`, which shows each
such character as an escape instead: C0 and C1 controls (ESC, so every escape sequence, among
them), DEL, the line and paragraph separators, and the bidirectional embeddings, overrides,
isolates and marks. Everything else (accents, scripts, emoji with their joiners) is kept.
`--json` output is escaped by JSON itself.
"""

from __future__ import annotations

import re

_SHOWN_AS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Cc (U+0000-001F, U+007F-009F), Zl/Zp (U+2028, U+2029), and the bidirectional controls:
# ALM U+061C, LRM/RLM U+200E-200F, embeddings and overrides U+202A-202E, isolates U+2066-2069.
_HOSTILE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHOWN_AS:
        return _SHOWN_AS[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control, separator and bidirectional control shown as an escape."""
    return _HOSTILE.sub(_shown, text)
