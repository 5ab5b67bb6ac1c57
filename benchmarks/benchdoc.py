"""What every benchmark script shares: its own section of docs/BENCHMARKS.md and the facts that make a
number reproducible (command, commit)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "BENCHMARKS.md"
DOC_HEADER = """# Benchmarks

Every number below was measured and written by a script in `benchmarks/`; do not edit by hand. Each
script owns the section between its `<!-- name:begin -->` and `<!-- name:end -->` markers and rewrites
only that section, so the scripts can be run independently.
"""


def replace_section(name: str, body: str, *, doc: Path = DOC) -> None:
    """Put `body` between this script's markers, appending the section if the file does not have it yet."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else DOC_HEADER
    section = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def script_command() -> str:
    """The command line that ran this script, as a reader would retype it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def git_commit() -> str:
    """The checked-out commit, marked 'dirty' when the working tree has changes the numbers depend on."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                f":!{DOC.relative_to(REPO)}"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def runnable(baseline: str) -> bool:
    """Learned peers are optional: without their packages their rows are left out, with a note."""
    from sagan_restore import baselines

    missing = baselines.peer_missing(baseline) if baseline in baselines.PEERS else None
    if missing:
        print(f"{Path(sys.argv[0]).name}: {missing}; so {baseline} has no rows", file=sys.stderr)
    return missing is None


# An environment in which `enhance`, `evaluate` and `train` keep glibc's own malloc settings: any
# GLIBC_TUNABLES makes them leave malloc alone (sagan_restore.allocator), and 0 is perturb's default.
GLIBC_MALLOC_DEFAULTS = {"GLIBC_TUNABLES": "glibc.malloc.perturb=0"}


def cpu_family() -> str:
    """A section key for numbers that depend on the kind of CPU: the vendor, and whether bf16 is native
    (machines of one vendor differ in that)."""
    from sagan_restore.devices import cpu_has_native_bf16
    from sagan_restore.evaluation.machine import cpu_name

    name = cpu_name().lower()
    vendor = "amd" if "amd" in name else "intel" if "intel" in name else "other"
    return vendor if cpu_has_native_bf16() else f"{vendor}-no-bf16"
