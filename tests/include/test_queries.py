"""The SQL files that take fragments (``{name}`` slots filled by passpush.queries.composed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from passpush.paths import QUERIES_DIR

SLOT = re.compile(r"\{\w+\}")


@pytest.mark.parametrize("path", sorted(QUERIES_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_no_slot_is_named_in_a_comment(path: Path) -> None:
    """A slot in a "--" comment is filled too: a fragment with a line break (a message on two lines)
    would end the comment and run the rest of its text as SQL."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        _, dash, comment = line.partition("--")
        assert not (dash and SLOT.search(comment)), f"{path.name}:{number}: a slot in a comment: {line.strip()}"
