"""The notification channel's admin page in Chromium against a real Daphne: the test-send
button posts to a real local HTTP receiver and the page shows what it answered."""

import pytest

from core.roles import ON_CALL
from oncall.models import NotificationChannel
from tests.browser.conftest import chromium, in_thread, log_in  # noqa: F401 (fixtures)
from tests.builders import user_make
from tests.oncall.receiver import Receiver
from tests.processes import daphne_server
from tests.redis_db import redis_test_db_flush

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests"


def channel_make(url: str) -> int:
    redis_test_db_flush()
    user_make("engineer", role=ON_CALL, is_staff=True)
    return NotificationChannel.objects.create(name="ops-hook", kind="webhook", url=url).pk


def test_on_call_sends_a_test_notification_from_the_channel_page(chromium):  # noqa: F811
    with Receiver(statuses=(200, 503)) as receiver, daphne_server() as daphne:
        channel_id = in_thread(channel_make, receiver.url)
        page = chromium.new_context(viewport={"width": 1366, "height": 900}).new_page()
        log_in(page, daphne.base_url, username="engineer", password=PASSWORD)
        page.goto(f"{daphne.base_url}/admin/oncall/notificationchannel/{channel_id}/change/")

        # when they click the button
        page.get_by_role("button", name="Send a test notification").click()

        # then the receiver got the test, and the page says it was sent and what came back
        page.wait_for_selector("text=Test notification sent to ops-hook: HTTP 200 ok")
        (body,) = receiver.wait_for(1)
        assert (body["event"], body["by"]) == ("test", "engineer")

        # and when the receiver answers an error the next time, the page says so
        page.get_by_role("button", name="Send a test notification").click()
        page.wait_for_selector(
            "text=Test notification to ops-hook failed: HTTP 503 receiver is down"
        )
        assert len(receiver.wait_for(2)) == 2
