"""README.md, the guides in docs/ and the package agree: every Python block runs (a block
marked as a fragment, an excerpt of a complete example, is compiled and its imports run),
every ``zotrain`` command line parses with the real parser (the quick ones run), every
flag a page names exists, every example and link it names exists, and the API it names
is importable."""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from zotrain import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = {p: (ROOT / p).read_text() for p in
         ["README.md"] + sorted(str(f.relative_to(ROOT)) for f in (ROOT / "docs").glob("*.md"))}
README = "\n".join(PAGES.values())
#: (fragment marker or "", language, code) of every fenced block
BLOCKS = re.findall(r"(<!-- fragment[^>]*-->\n)?```(\w*)\n(.*?)```", README, re.S)
PYTHON = [(bool(mark), code) for mark, lang, code in BLOCKS if lang == "python"]
SHELL = [line.split("#")[0].strip() for mark, lang, code in BLOCKS if lang in ("bash", "")
         for line in code.splitlines()
         if line.startswith(("zotrain", "python ", "pip ", "pytest"))]
COMMANDS = [line for line in SHELL if line.startswith("zotrain")]
QUICK = {("--help",), ("models",)}  # commands that run in a second


def test_the_readme_has_what_this_test_reads():
    assert len(PYTHON) >= 3 and len(COMMANDS) >= 10


@pytest.mark.parametrize("fragment,code", PYTHON, ids=[f"block{i}" for i in range(len(PYTHON))])
def test_python_blocks_run(tmp_path, fragment, code):
    if fragment:
        compile(code, "README.md", "exec")
        code = "\n".join(line for line in code.splitlines()
                         if line.startswith(("import ", "from ")))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out"), "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_the_readme_is_the_front_door():
    assert len(PAGES["README.md"].splitlines()) <= 220
    for guide in ("classification", "pinns", "edge", "distributed", "architecture",
                  "benchmarks"):
        assert f"(docs/{guide}.md)" in PAGES["README.md"]


def test_every_flag_a_page_names_exists():
    """A ``--flag`` in a page's code is an option of a zotrain command (aliases included) or
    of a script it names (benchmarks/, examples/), or pip's/pytest's."""
    known = set()
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for parser in sub.choices.values():
        for action in parser._actions:
            known.update(action.option_strings)
    scripts = "".join(f.read_text() for d in ("benchmarks", "examples")
                      for f in (ROOT / d).glob("*.py"))
    code = " ".join(re.findall(r"`([^`]+)`", README)) + " ".join(c for _, _, c in BLOCKS)
    for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", code))):
        assert flag in known or f'"{flag}"' in scripts or flag in ("--help",), \
            f"a page names {flag}, which no command or script has"


def test_the_own_data_block_is_the_example_file():
    own = (ROOT / "examples" / "own_data.py").read_text()
    assert any(code.strip() in own and len(code) > 0.8 * len(own) for _, code in PYTHON)


@pytest.mark.parametrize("line", COMMANDS)
def test_zotrain_commands_parse(line, capsys):
    argv = shlex.split(line)[1:]
    parser = cli.build_parser()
    if tuple(argv) in QUICK:
        code = None
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code
        assert code == 0
        return
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"README command does not parse: {line}\n{capsys.readouterr().err}")
    assert args.command is not None


def test_named_examples_and_files_exist():
    for line in SHELL:
        for word in shlex.split(line):
            if word.startswith(("examples/", "benchmarks/")):
                assert (ROOT / word).is_file(), word
    for page, text in PAGES.items():
        for link in re.findall(r"\]\(([^)#]+)\)", text):
            if not link.startswith("http"):
                assert ((ROOT / page).parent / link).exists(), f"{page}: {link}"


def test_the_api_the_readme_names_exists():
    import importlib

    for dotted in sorted(set(re.findall(r"`(zotrain(?:\.\w+)+)", README))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"README names {dotted}, which does not exist"
                obj = getattr(obj, attr)
            break
        else:
            pytest.fail(f"README names {dotted}, which does not import")
