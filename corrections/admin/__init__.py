"""Admin screens for stock staff and managers: corrections and count sheets.

The admin only collects input and shows results; every change goes through
`corrections.services`, which checks permissions again. Every change made here is
written to the admin's history (LogEntry), decisions and discards included.
"""

from corrections.admin import corrections, countsheets  # noqa: F401 (registers)
