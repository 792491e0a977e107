"""Bounds on the quantities people and producers may ask for (no Django imports).

Far inside the 64-bit columns of the ledger: a level moved by a billion units at a time is
still nine billion moves away from overflowing, and a bad input gets a clear error at the edge
instead of a database error deep in a transaction.
"""

MAX_QTY = 1_000_000_000
