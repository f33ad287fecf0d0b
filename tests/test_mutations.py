"""The mutation list (tests/mutations.py) stays applicable: every snippet occurs exactly once in
today's code and every test it names exists, so `make mutate` cannot rot silently."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT
from mutations import MUTATIONS, Mutation


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_applies_to_the_current_code(mutation):
    text = (ROOT / mutation.file).read_text()
    mutated = mutation.apply(text)  # raises unless each original occurs exactly once
    assert mutated != text and all(original != replacement for original, replacement in mutation.edits)
    assert mutation.breaks and mutation.tests


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_names_existing_tests(mutation):
    for selector in mutation.tests:
        file, _, name = selector.partition("::")
        assert file.startswith("tests/test_") and (ROOT / file).is_file(), selector
        if name:
            function = re.sub(r"\[.*\]$", "", name)
            assert re.search(rf"^def {function}\(", (ROOT / file).read_text(), re.M), selector


def test_names_are_unique():
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))


def test_a_stale_snippet_is_an_error_naming_the_mutation():
    stale = Mutation("renamed helper", "videosspo/x.py", "old_name()", "new_name()", "nothing", ("tests/test_x.py",))
    with pytest.raises(ValueError, match=r"'renamed helper'.*occurs 0 times.*update tests/mutations.py"):
        stale.apply("other_name()\n")
    with pytest.raises(ValueError, match="occurs 2 times"):
        stale.apply("old_name()\nold_name()\n")
