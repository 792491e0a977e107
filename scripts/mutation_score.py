"""Print the mutation score per module from mutmut's results in mutants/ (see mutation_run)."""

import collections
import re
import subprocess
import sys

KILLED = {"killed", "timeout", "caught by type check"}


def main() -> int:
    listing = subprocess.run(
        [".venv/bin/mutmut", "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in listing.splitlines():
        match = re.match(r"\s*([\w.]+?)\.x[ΔǁÅ_]*\w+__mutmut_\d+: (.+)$", line)
        if not match:
            continue
        module, status = match.groups()
        by_module[module][status] += 1
    if not by_module:
        print("no mutation results yet: run scripts/mutation_run first")
        return 1
    print(f"{'module':45} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'score':>6}")
    for module, counts in sorted(by_module.items()):
        checked = sum(n for status, n in counts.items() if status != "not checked")
        killed = sum(counts[status] for status in KILLED)
        other = checked - killed - counts["survived"]
        score = f"{100 * killed / checked:.1f}%" if checked else "-"
        print(f"{module:45} {checked:8} {killed:7} {counts['survived']:9} {other:6} {score:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
