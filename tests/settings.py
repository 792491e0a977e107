"""Settings of the test run: the project's own, given a secret key of its own.

`DEBUG` stays off (as in production), so the settings require `SECRET_KEY`. It goes into this
process's environment, and so to the processes the tests start (Daphne, workers), which must
share it: a session signed here is checked there.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment-0123456789")

from inventory_ops.settings import *  # noqa: F403
