"""The README's and the docs' shell examples run as written.

Every fenced block tagged ``sh`` in README.md and docs/*.md runs, in the
order of its page, in one bash per page (so what an ``eval`` exports carries
on to the next block), with ``set -euo pipefail``: a command that fails
fails the test, naming the page and the block's first line.  A block that
is not meant to be run here (it needs a real machine, or takes minutes) has
``<!-- not run by the doc test: why -->`` on the line before it.

The page runs as a newcomer would, with the virtualenv active: ``.venv/bin``
first on PATH, from a scratch directory that links the repository's
top-level entries (so ``nix-modules/...`` works and nothing is written into
the checkout), with HOME there too, and the background environments of
``python -m fediversity_providers.testing`` kept in it and stopped after.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fediversity_providers.testing import require

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*not run by the doc test:\s*(.+?)\s*-->")


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, why not run) of each ``sh`` block of ``page``."""
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = lines[start - 2] if start >= 2 else ""
            skip = SKIP.search(before)
            found.append((start, "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return found


def test_every_page_has_its_examples_found():
    counted = {page.name: len(blocks(page)) for page in PAGES}
    assert counted["README.md"] >= 2 and counted["existing_vm.md"] >= 1, counted


def test_a_skipped_block_says_why():
    for page in PAGES:
        for line, _, why in blocks(page):
            assert why is None or len(why) > 10, f"{page.name}:{line}: say why the block is not run"


def _script(page: Path) -> str:
    parts = ["set -euo pipefail", "trap 'python -m fediversity_providers.testing stop >/dev/null 2>&1 || true' EXIT"]
    for line, code, why in blocks(page):
        if why is None:
            parts.append(f"echo '### {page.name}:{line}' >&2")
            parts.append(code)
    return "\n".join(parts) + "\n"


RUNNABLE = [page for page in PAGES if any(why is None for _, _, why in blocks(page))]


@pytest.mark.needs_root
@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_the_examples_of_a_page_run(page, tmp_path):
    require(os.geteuid() == 0, "the doc examples bring up SSH test hosts, which needs root")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in (".git",):
            (scratch / entry.name).symlink_to(entry)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("XDG_", "FVP_", "NIX_"))}
    venv_bin = Path(sys.executable).parent
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", HOME=str(scratch),
               FEDIVERSITY_TRYOUT_DIR=str(tmp_path / "tryout"), VIRTUAL_ENV=str(venv_bin.parent))
    result = subprocess.run(["bash", "-c", _script(page)], cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=600)
    last = [line for line in result.stderr.splitlines() if line.startswith("### ")]
    assert result.returncode == 0, (
        f"{page.name}: the example at {last[-1][4:] if last else '?'} failed with status {result.returncode}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")
