"""The documentation's examples run: docs/api.md, docs/course.md and docs/traces.md
are doctests.

Each file runs as one doctest session (the ``>>>`` lines of its ```python
blocks, in order, in one namespace) against the installed pymmu, the Cython
core. README.md and docs/guide.md are run on both implementations by
``test_cli.py``.
"""
from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import pymmu

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["docs/api.md", "docs/course.md", "docs/traces.md"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


class MarkdownParser(doctest.DocTestParser):
    """Only the ```python blocks of a markdown file are examples.

    Prose and other blocks become blank lines, so that line numbers in failure
    reports stay those of the file and a closing fence never reads as expected
    output.
    """

    _BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

    def parse(self, string, name="<string>"):
        kept = ["\n"] * string.count("\n")
        for block in self._BLOCK.finditer(string):
            first = string.count("\n", 0, block.start(1))
            for i, line in enumerate(block.group(1).splitlines(keepends=True)):
                kept[first + i] = line
        return super().parse("".join(kept), name)


def core_or_skip():
    try:
        pymmu.Machine(1)
    except NotImplementedError as e:
        pytest.skip(f"the core is still a placeholder ({e})")


@pytest.mark.parametrize("doc", DOCS)
def test_doc_examples(doc):
    core_or_skip()
    result = doctest.testfile(
        str(ROOT / doc), module_relative=False, globs={}, report=True, verbose=False,
        optionflags=FLAGS, parser=MarkdownParser())
    assert result.attempted > 0, f"{doc} has no doctest examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {doc} failed"
