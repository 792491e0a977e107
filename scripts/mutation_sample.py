"""Print a uniform random sample of mutmut's mutant names, per module (see mutation_run).

    .venv/bin/python scripts/mutation_sample.py 60 'ingest.keys.*' ['inventory_ops.views.*' ...]
    MUTATION_SAMPLE_SEED=3 .venv/bin/python scripts/mutation_sample.py 60 'ingest.keys.*'

All of every matching module's mutants are listed when it has no more than the sample size.
The sample is seeded by the module's name, so it is the same sample every time for unchanged
code: a later run re-checks the same mutants (after new tests) and the score compares.
MUTATION_SAMPLE_SEED draws another sample (seeded by it and the module's name): a fresh one,
for a score not measured on the mutants that tests were written against.
Generates mutants/ first if it does not exist yet (as `mutmut run` would).
"""

import fnmatch
import json
import os
import random
import sys
from pathlib import Path

MUTANTS = Path("mutants")


def mutants_generate() -> None:
    # The same steps `mutmut run` starts with; cheap when mutants/ is up to date.
    from mutmut.__main__ import create_mutants, set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths

    set_mutant_under_test("mutant_generation")
    MUTANTS.mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    create_mutants(1)


def names_by_module() -> dict[str, list[str]]:
    by_module: dict[str, list[str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        for name in json.loads(meta.read_text())["exit_code_by_key"]:
            module = name.rsplit(".x", 1)[0]
            by_module.setdefault(module, []).append(name)
    return by_module


def main() -> int:
    size, patterns = int(sys.argv[1]), sys.argv[2:]
    seed = os.environ.get("MUTATION_SAMPLE_SEED", "")
    if not list(MUTANTS.rglob("*.py.meta")):
        mutants_generate()
    chosen = []
    for module, names in sorted(names_by_module().items()):
        if not any(fnmatch.fnmatch(names[0], pattern) for pattern in patterns):
            continue
        sample = sorted(names)
        if len(sample) > size:
            sample = random.Random(f"{seed}:{module}" if seed else module).sample(sample, size)
        print(f"{module}: {len(sample)} of {len(names)} mutants", file=sys.stderr)
        chosen += sample
    print("\n".join(chosen))
    return 0 if chosen else 1


if __name__ == "__main__":
    sys.exit(main())
