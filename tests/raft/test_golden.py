"""Golden-file interaction tests: tests/raft/testdata/*.txt, run by golden.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .golden import REWRITE_ENV, Block, parse, render, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_golden(path: Path) -> None:
    run_file(path)


def test_there_are_golden_files() -> None:
    assert len(FILES) >= 5


@pytest.mark.skipif(os.environ.get(REWRITE_ENV) == "1", reason="rewriting golden files")
def test_a_changed_output_fails_and_names_the_command(tmp_path: Path) -> None:
    script = tmp_path / "wrong.txt"
    script.write_text("cluster 1\n----\n(nothing)\n\ncampaign 1\n----\nn1: Ready: no sync\n")
    with pytest.raises(AssertionError, match="`campaign 1` printed"):
        run_file(script)


def test_parse_and_render_round_trip() -> None:
    text = "# a comment\ncluster 1,2\n----\n(nothing)\n\nstatus 1\n----\nn1: follower\n"
    blocks = parse(text)
    assert blocks == [
        Block(["# a comment"], "cluster 1,2", ["(nothing)"]),
        Block([], "status 1", ["n1: follower"]),
    ]
    assert render(blocks, [block.expected for block in blocks]) == text
