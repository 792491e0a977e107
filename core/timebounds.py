"""The range of times the product stores, and the range it accepts from producers.

Two ranges, one inside the other:
- what the database holds: every event-time column has a CHECK constraint keeping it within
  `STORABLE_FROM` .. `STORABLE_UNTIL` (far inside what Python's datetime can read, with room for
  time-zone shifts and window arithmetic), so no row can break a read path;
- what the ingest accepts: from `EVENT_TIME_FLOOR` to `EVENT_TIME_FUTURE_TOLERANCE_SECONDS`
  after now (settings); outside it an event is rejected with a reason naming the field.

No Django imports: settings.py parses the floor with `time_floor_parse`.
"""

from datetime import UTC, datetime, timedelta

STORABLE_FROM = datetime(1900, 1, 1, tzinfo=UTC)
STORABLE_UNTIL = datetime(2500, 1, 1, tzinfo=UTC)


def time_floor_parse(text: str) -> datetime:
    """An ISO 8601 date or datetime as an aware datetime (UTC if it names no offset).

    Raises ValueError saying what is wrong, also when it lies outside what the database stores.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"EVENT_TIME_FLOOR must be an ISO 8601 date or datetime such as 2000-01-01; "
            f"got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not STORABLE_FROM <= moment < STORABLE_UNTIL:
        raise ValueError(
            f"EVENT_TIME_FLOOR must lie between {STORABLE_FROM:%Y-%m-%d} and "
            f"{STORABLE_UNTIL:%Y-%m-%d}; got {text!r}"
        )
    return moment


def accepted_until(*, now: datetime, tolerance_seconds: float) -> datetime:
    """The latest event time accepted at `now`: `now` plus the tolerance, within what is stored."""
    latest = STORABLE_UNTIL - timedelta(microseconds=1)
    if tolerance_seconds >= (latest - now).total_seconds():
        return latest
    return now + timedelta(seconds=max(0.0, tolerance_seconds))
