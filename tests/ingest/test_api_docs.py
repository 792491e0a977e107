"""docs/api.md is what integrators copy: every example event in it must be one the workers
accept, and every event type must have one."""

import json
import re

from django.conf import settings

from ingest.parsing import events_parse
from ingest.schemas import EVENT_TYPES, event_validate

API_DOC = settings.BASE_DIR / "docs" / "api.md"


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", API_DOC.read_text(), flags=re.S)


def test_every_event_type_has_a_complete_example_the_workers_accept():
    examples = [json.loads(block) for block in fenced("json")]
    events = [example for example in examples if "type" in example]

    for example in events:
        event_validate(example)  # raises ValidationError, naming the field, if not
    assert {event["type"] for event in events} == EVENT_TYPES


def test_the_csv_example_parses_into_events_the_workers_accept():
    [csv] = fenced("csv")

    events = events_parse(body_format="csv", text=csv)

    assert len(events) == 3
    for event in events:
        event_validate(event)


def test_the_curl_example_sends_a_valid_batch():
    [shell] = [block for block in fenced("sh") if "curl" in block]
    body = re.search(r"--data '(.*?)'", shell, flags=re.S).group(1)

    for event in events_parse(body_format="json", text=body):
        event_validate(event)
