"""Settings of the mutation run (scripts/mutation_run): the test settings with a fast password
hasher.

The mutation run repeats the fast tests thousands of times, and every user a test makes costs
PBKDF2's deliberate ~0.5 s of hashing (the largest single cost of a mutant's run). Those tests
never start a process that checks a password, so the hash only has to be one this process
can read. Never used by `make test`: its Daphne and browser tests log in with passwords the
production settings must verify.
"""

from tests.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
