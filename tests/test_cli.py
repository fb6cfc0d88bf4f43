"""The command line and the project's front door: ``pymmu demo``, the README, .ci/run.

* the demo runs end to end, as a subprocess (``python -m pymmu demo``) and in
  process on both implementations, prints the same text on both, stays within
  100 columns and tells the story's key facts;
* the README's quick start is two commands, and .ci/run runs its test command
  verbatim;
* the README's API tour is a doctest that passes on both implementations.
"""
from __future__ import annotations

import doctest
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pymmu
from pymmu import cli
from pymmu.demo import WIDTH, demo

ROOT = Path(__file__).resolve().parent.parent


def core_or_skip():
    try:
        pymmu.Machine(1)
    except NotImplementedError as e:
        pytest.skip(f"core: pymmu.Machine is still a placeholder ({e})")
    return pymmu.Machine


def reference_or_skip():
    reference = pytest.importorskip("pymmu.reference")
    return reference.Machine


def run_demo(Machine) -> str:  # noqa: N803
    out = io.StringIO()
    demo(Machine, out=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def outputs():
    """Demo output per implementation (computed once; missing ones are absent)."""
    found = {}
    for name, get in (("core", core_or_skip), ("reference", reference_or_skip)):
        try:
            found[name] = run_demo(get())
        except pytest.skip.Exception:
            pass
    return found


def counters_lines(text: str) -> list[str]:
    """The demo's counter lines, each with its continuation lines joined to it."""
    found = []
    for line in text.splitlines():
        if re.match(r"  counters .*?: ", line):
            found.append(line)
        elif found and found[-1] is not None and line.startswith("      "):
            found[-1] += " " + line.strip()
        elif found and found[-1] is not None:
            found.append(None)
    return [line for line in found if line is not None]


# ---------------------------------------------------------------------- the demo


def test_demo_runs_in_process(Machine):  # noqa: N803
    text = run_demo(Machine)
    assert text.startswith("pymmu demo")
    for n in range(1, 7):
        assert re.search(rf"^{n}\. ", text, re.M), f"section {n} missing"


def test_demo_key_facts(Machine):  # noqa: N803
    text = run_demo(Machine)
    counters = "\n".join(counters_lines(text))
    # Section 1: three pages written, three zero fills.
    assert re.search(r"\bzero_fills 3\b", counters)
    # Section 2: fork, both page tables side by side, frames shared (refcount 2).
    assert "parent pid 1" in text and "child pid 2" in text
    assert re.search(r"\bforks 1\b", counters)
    assert text.count("same frame, refcount 2") >= 3
    # Section 3: only C is copied, then the parent reuses its frame in place.
    assert re.search(r"\bcow_copies 1\b", counters)
    assert re.search(r"\bcow_reuses 1\b", counters)
    assert "reads C: \"C: child's version\"" in text
    assert "reads C: \"C: parent's data\"" in text
    # Section 4: the zero page (pfn frames = 8), no frame used, then a zero fill.
    assert re.search(r"\bzero_page_maps 2\b", counters)
    assert "same zero page, refcount 2" in text
    # Section 5: the parent is suspended during vfork, the child execs an image.
    assert "ProcessStateError" in text
    assert re.search(r"\bvforks 1\b", counters) and re.search(r"\bexecs 1\b", counters)
    assert re.search(r"\bfile_reads 2\b", counters)
    assert "r-xp" in text and "hello" in text
    assert "every refcount is as before" in text
    # Section 6: memory pressure, evictions to swap and a swap-in.
    assert re.search(r"\bevictions [1-9]", counters)
    assert re.search(r"\bswap_outs [1-9]", counters)
    assert re.search(r"\bswap_ins 1\b", counters)
    assert "swap slot" in text
    assert "skipped P1" in text


def test_demo_counter_lines_show_only_nonzero(Machine):  # noqa: N803
    for line in counters_lines(run_demo(Machine)):
        assert not re.search(r"\b[a-z_]+ 0\b", line), line


def test_demo_fits_width_and_is_deterministic(Machine):  # noqa: N803
    text = run_demo(Machine)
    assert run_demo(Machine) == text
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide
    assert text.isascii()


def test_demo_same_text_on_both_implementations(outputs):
    if len(outputs) < 2:
        pytest.skip(f"only {', '.join(outputs) or 'no'} implementation available")
    # Exception messages are free text: compare the exception's name only.
    core, ref = ([re.sub(r"(Error|Fault): .*", r"\1", line) for line in out.splitlines()]
                 for out in (outputs["core"], outputs["reference"]))
    for i, (a, b) in enumerate(zip(core, ref)):
        assert a == b, f"line {i + 1} differs:\n core: {a}\n  ref: {b}"
    assert len(core) == len(ref)


def _run(*args, cwd):
    # Run outside the repository: `python -m` puts the working directory first on
    # sys.path, and the source tree is not what was installed.
    return subprocess.run([sys.executable, "-m", "pymmu", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_python_m_pymmu_demo(tmp_path):
    core_or_skip()
    r = _run("demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert re.search(r"\bcow_copies 1\b", r.stdout)
    assert "6. Memory pressure" in r.stdout


def test_python_m_pymmu_demo_reference(tmp_path):
    reference_or_skip()
    r = _run("demo", "--reference", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\bcow_copies 1\b", r.stdout)


def test_demo_into_closed_pipe_exits_quietly(tmp_path):
    reference_or_skip()
    r = subprocess.run(f"'{sys.executable}' -m pymmu demo --reference | head -n 3",
                       shell=True, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.stdout.startswith("pymmu demo")
    assert "Traceback" not in r.stderr


# -------------------------------------------------------------------- the parser


def test_cli_requires_a_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_cli_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_cli_demo_reference_in_process(capsys):
    reference_or_skip()
    assert cli.main(["demo", "--reference"]) == 0
    assert "cow_copies 1" in capsys.readouterr().out


def test_console_script_points_at_main():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^pymmu = "pymmu\.cli:main"$', text, re.M)


# ------------------------------------------------------------ README and .ci/run


def quick_start() -> list[str]:
    """The commands of the README's quick-start block."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_quick_start_is_two_commands():
    commands = quick_start()
    assert len(commands) == 2, commands
    install, test = commands
    assert "pip install ." in install and install.endswith("pymmu demo")
    assert '".[test]"' in test


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = quick_start()[1]
    lines = [line.strip() for line in ci.splitlines()]
    assert test_command in lines, f"{test_command!r} is not a line of .ci/run"
    assert "set -euo pipefail" in lines
    assert "export HYPOTHESIS_PROFILE=ci" in lines
    assert any("-m venv" in line for line in lines)
    # the profile is set before the command runs
    assert lines.index("export HYPOTHESIS_PROFILE=ci") < lines.index(test_command)


def test_readme_links_exist():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


def markdown_doctest(path: Path) -> doctest.DocTest:
    """The ```python blocks of a markdown file, as one doctest."""
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)
    text = "\n".join(blocks)
    return doctest.DocTestParser().get_doctest(text, {}, path.name, str(path), 0)


@pytest.mark.parametrize("impl", ["core", "reference"])
@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md"])
def test_markdown_doctests(doc, impl, monkeypatch):
    """The README's tour and the guide's examples pass on both implementations."""
    Machine = core_or_skip() if impl == "core" else reference_or_skip()  # noqa: N806
    monkeypatch.setattr(pymmu, "Machine", Machine)
    test = markdown_doctest(ROOT / doc)
    assert test.examples, f"{doc} has no doctest examples"
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    result = runner.run(test, out=out.write)
    assert result.failed == 0, out.getvalue()
