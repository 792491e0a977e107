from decimal import Decimal

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, transaction
from django.urls import reverse
from django.utils import timezone

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from corrections.countsheets import MAX_LINES, count_sheet_parse
from corrections.exceptions import CountSheetInvalid
from corrections.models import CountSheet, CountSheetStatus
from ledger.models import Movement, MovementCause, MovementKind, StockLevel
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/admin/corrections/countsheet/add/"


def csv_file(text: str, name="count.csv"):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def logged_in(client, role):
    user = user_make(role=role, is_staff=True)
    client.force_login(user)
    return user


def on_hand(site, sku) -> int:
    return StockLevel.objects.get(site=site, sku=sku).on_hand


def test_a_sheet_is_previewed_with_its_mismatches_then_applied_as_counts(client):
    site = site_make("ams")
    milk, eggs = sku_make("MILK", unit_cost="1.50"), sku_make("EGGS", unit_cost="3.00")
    movements_record(requests=[receive(site, milk, 10), receive(site, eggs, 5)])
    staff = logged_in(client, STOCK_STAFF)

    upload = client.post(
        UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,8\nams,EGGS,5\n")}
    )

    sheet = CountSheet.objects.get()
    assert upload.url == reverse("admin:corrections_countsheet_change", args=[sheet.pk])
    preview = client.get(upload.url)
    assert preview.context["mismatch_count"] == 1
    assert preview.context["mismatch_value"] == 3
    assert preview.text.count('class="mismatch"') == 1
    assert on_hand(site, milk) == 10  # the preview applies nothing

    client.post(reverse("admin:corrections_countsheet_apply", args=[sheet.pk]))

    assert on_hand(site, milk) == 8
    assert on_hand(site, eggs) == 5
    counts = Movement.objects.filter(kind=MovementKind.COUNTED).order_by("id")
    assert [(m.on_hand_delta, m.cause, m.cause_ref, m.user_id) for m in counts] == [
        (-2, MovementCause.COUNT, f"countsheet:{sheet.pk}", staff.pk),
        (0, MovementCause.COUNT, f"countsheet:{sheet.pk}", staff.pk),
    ]
    sheet.refresh_from_db()
    assert sheet.status == CountSheetStatus.APPLIED
    line = sheet.lines.get(sku=milk)
    assert (line.on_hand_before, line.applied_delta) == (10, -2)

    again = client.post(reverse("admin:corrections_countsheet_apply", args=[sheet.pk]), follow=True)
    assert "already applied" in again.text
    assert Movement.objects.filter(kind=MovementKind.COUNTED).count() == 2


def test_every_bad_line_is_listed_with_its_reason_and_nothing_is_kept(client):
    site = site_make("ams")
    milk = sku_make("MILK")
    movements_record(requests=[receive(site, milk, 10)])
    logged_in(client, STOCK_STAFF)
    sheet = (
        "site,sku,counted_qty\n"
        "ams,MILK,8\n"
        "nowhere,MILK,1\n"
        "ams,GHOST,2\n"
        "ams,MILK,abc\n"
        "ams,MILK,-4\n"
        "ams\n"
        "ams,MILK,9\n"
    )

    response = client.post(UPLOAD_URL, {"sheet": csv_file(sheet)})

    assert response.status_code == 200
    problems = dict(response.context["problems"])
    assert problems[3] == "unknown site 'nowhere'"
    assert problems[4] == "unknown SKU 'GHOST'"
    assert "'abc' is not a whole number" in problems[5]
    assert "-4 is negative" in problems[6]
    assert problems[7] == "expected 3 fields, found 1"
    assert problems[8] == "ams/MILK is already counted on line 2"
    assert 2 not in problems
    assert "nothing was applied" in response.text
    assert not CountSheet.objects.exists()
    assert on_hand(site, milk) == 10
    assert not Movement.objects.filter(kind=MovementKind.COUNTED).exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "The submitted file is empty"),
        (
            b"site,sku,qty\nams,MILK,1\n",
            "the header lacks counted_qty (expected site,sku,counted_qty, in any case, with "
            "spaces or underscores)",
        ),
        (b"site,sku,counted_qty\n", "no lines"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_a_malformed_file_is_refused_with_a_reason(client, content, problem):
    site_make("ams")
    sku_make("MILK")
    logged_in(client, STOCK_STAFF)

    response = client.post(
        UPLOAD_URL, {"sheet": SimpleUploadedFile("c.csv", content, content_type="text/csv")}
    )

    assert response.status_code == 200
    assert problem in response.text
    assert not CountSheet.objects.exists()


@pytest.mark.parametrize("role", [MANAGERS, ON_CALL, None])
def test_only_stock_staff_import_counts(client, role):
    site_make("ams")
    sku_make("MILK")
    logged_in(client, role)

    response = client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,1\n")})

    assert response.status_code == 403
    assert not CountSheet.objects.exists()


def test_applying_someone_elses_sheet_needs_the_import_permission(client):
    site, milk = site_make("ams"), sku_make("MILK")
    movements_record(requests=[receive(site, milk, 10)])
    logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,3\n")})
    sheet = CountSheet.objects.get()

    logged_in(client, MANAGERS)
    response = client.post(reverse("admin:corrections_countsheet_apply", args=[sheet.pk]))

    assert response.status_code == 403
    assert on_hand(site, milk) == 10


def test_a_previewed_sheet_can_be_discarded(client):
    site_make("ams")
    sku_make("MILK")
    logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,3\n")})

    client.post(reverse("admin:corrections_countsheet_discard", args=[CountSheet.objects.get().pk]))

    assert not CountSheet.objects.exists()
    assert not Movement.objects.exists()


def test_a_sku_name_with_script_is_inert_on_the_count_sheet_preview(client):
    site_make("ams")
    sku_make("MILK", name="<script>alert('x')</script>")
    logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,3\n")})

    page = client.get(
        reverse("admin:corrections_countsheet_change", args=[CountSheet.objects.get().pk])
    )

    assert "<script>alert('x')" not in page.text
    assert "&lt;script&gt;alert(" in page.text


def test_a_count_beyond_what_the_ledger_holds_is_a_line_problem(client):
    # given a stocked level
    site, milk = site_make("ams"), sku_make("MILK")
    movements_record(requests=[receive(site, milk, 10)])
    logged_in(client, STOCK_STAFF)
    sheet = "site,sku,counted_qty\nams,MILK,99999999999999999999\n"
    # when a sheet counts more than a stock level can hold
    response = client.post(UPLOAD_URL, {"sheet": csv_file(sheet)})
    # then the line is listed with its reason and nothing is kept
    assert response.status_code == 200
    assert "counted_qty 99999999999999999999 is more than 1000000000" in response.text
    assert not CountSheet.objects.exists()
    assert on_hand(site, milk) == 10


def test_a_sheet_whose_differences_are_worth_more_than_the_threshold_waits_for_a_manager(
    client, settings
):
    # given 138,593 units worth 6.68 each on a level: a count of 100,000 is worth ~257,800
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000"
    site, gear = site_make("ams"), sku_make("GEAR", unit_cost="6.68")
    movements_record(requests=[receive(site, gear, 138_593)])
    staff = logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,GEAR,100000\n")})
    sheet = CountSheet.objects.get()

    # when stock staff apply it
    applied = client.post(
        reverse("admin:corrections_countsheet_apply", args=[sheet.pk]), follow=True
    )

    # then stock is unchanged and the sheet waits, with its value
    assert on_hand(site, gear) == 138_593
    assert not Movement.objects.filter(kind=MovementKind.COUNTED).exists()
    sheet.refresh_from_db()
    assert sheet.status == CountSheetStatus.PENDING
    assert sheet.value == Decimal("38593") * Decimal("6.68")
    assert (sheet.submitted_by, sheet.decided_by) == (staff, None)
    assert "waits for a manager" in applied.text
    # and they can neither apply it again nor discard it to dodge the wait
    client.post(reverse("admin:corrections_countsheet_apply", args=[sheet.pk]))
    client.post(reverse("admin:corrections_countsheet_discard", args=[sheet.pk]))
    assert CountSheet.objects.get().status == CountSheetStatus.PENDING
    # nor approve it
    approve_url = reverse("admin:corrections_countsheet_approve", args=[sheet.pk])
    assert client.post(approve_url).status_code == 403

    # when a manager approves it with a note, it applies, carrying the manager
    movements_record(requests=[receive(site, gear, 7)])  # stock moved while it waited
    manager = logged_in(client, MANAGERS)
    page = client.get(reverse("admin:corrections_countsheet_change", args=[sheet.pk]))
    assert "Approve and apply" in page.text
    client.post(approve_url, {"note": "recounted twice"})

    assert on_hand(site, gear) == 100_000  # the count wins, compared under lock at approval
    sheet.refresh_from_db()
    assert (sheet.status, sheet.decided_by, sheet.decision_note) == (
        CountSheetStatus.APPLIED,
        manager,
        "recounted twice",
    )
    movement = Movement.objects.get(kind=MovementKind.COUNTED)
    assert (movement.on_hand_delta, movement.user_id) == (100_000 - 138_600, manager.pk)


def test_a_sheet_worth_more_than_can_be_recorded_is_refused_saying_so_and_changes_nothing(
    client,
):
    # given one unit of a SKU at the highest unit cost a SKU can have
    site, gold = site_make("ams"), sku_make("GOLD", unit_cost="9999999999.9999")
    movements_record(requests=[receive(site, gold, 1)])
    logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,GOLD,2000001\n")})
    sheet = CountSheet.objects.get()

    # when stock staff apply a count two million units over
    applied = client.post(
        reverse("admin:corrections_countsheet_apply", args=[sheet.pk]), follow=True
    )

    # then they are told it is worth too much to record and to split it, and nothing changes
    assert [str(message) for message in applied.context["messages"]] == [
        "the sheet's differences would be worth 19,999,999,999,999,800.00, more than can "
        "be recorded (under 10,000,000,000,000,000): split it into several sheets"
    ]
    assert on_hand(site, gold) == 1
    assert CountSheet.objects.get().status == CountSheetStatus.PREVIEWED
    assert not Movement.objects.filter(kind=MovementKind.COUNTED).exists()


def test_a_manager_rejects_a_waiting_sheet_with_a_note_and_stock_is_unchanged(client, settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    site, milk = site_make("ams"), sku_make("MILK", unit_cost="5.00")
    movements_record(requests=[receive(site, milk, 10)])
    logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,3\n")})
    sheet = CountSheet.objects.get()
    client.post(reverse("admin:corrections_countsheet_apply", args=[sheet.pk]))
    manager = logged_in(client, MANAGERS)
    reject_url = reverse("admin:corrections_countsheet_reject", args=[sheet.pk])

    without_note = client.post(reject_url, {"note": " "}, follow=True)
    assert "say why the count sheet is rejected" in without_note.text.lower()
    client.post(reject_url, {"note": "wrong aisle"})

    sheet.refresh_from_db()
    assert (sheet.status, sheet.decided_by) == (CountSheetStatus.REJECTED, manager)
    assert on_hand(site, milk) == 10
    history = LogEntry.objects.filter(object_id=str(sheet.pk)).order_by("pk")
    assert [entry.change_message for entry in history] == [
        "Uploaded with 1 line(s).",
        "Submitted for approval (differences worth 35.00).",
        "Rejected. Note: wrong aisle",
    ]


def test_a_sheet_within_the_threshold_applies_at_once(client, settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    site, milk = site_make("ams"), sku_make("MILK", unit_cost="5.00")
    movements_record(requests=[receive(site, milk, 10)])
    logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,8\n")})
    sheet = CountSheet.objects.get()

    client.post(reverse("admin:corrections_countsheet_apply", args=[sheet.pk]))

    assert on_hand(site, milk) == 8
    assert CountSheet.objects.get().status == CountSheetStatus.APPLIED


def test_discarding_a_sheet_is_in_the_history(client):
    site_make("ams")
    sku_make("MILK")
    staff = logged_in(client, STOCK_STAFF)
    client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,MILK,3\n")})
    sheet = CountSheet.objects.get()

    client.post(reverse("admin:corrections_countsheet_discard", args=[sheet.pk]))

    entry = LogEntry.objects.filter(object_id=str(sheet.pk)).latest("pk")
    assert (entry.user, entry.action_flag, entry.change_message) == (
        staff,
        DELETION,
        "Discarded; nothing was applied.",
    )
    assert entry.object_repr == f"Count sheet #{sheet.pk} (count.csv)"


@pytest.mark.parametrize("status", [CountSheetStatus.APPLIED, CountSheetStatus.REJECTED])
def test_the_database_refuses_to_edit_a_decided_sheet(status):
    # SQLite once lost this trigger when a migration rebuilt the table (corrections 0005).
    sheet = CountSheet.objects.create(
        filename="count.csv",
        status=status,
        uploaded_by=user_make(role=STOCK_STAFF),
        uploaded_at=timezone.now(),
    )

    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        CountSheet.objects.filter(pk=sheet.pk).update(filename="forged.csv")

    assert CountSheet.objects.get().filename == "count.csv"


def test_headers_are_read_in_any_case_with_spaces_or_underscores(client):
    site, milk = site_make("ams"), sku_make("MILK")
    movements_record(requests=[receive(site, milk, 10)])
    logged_in(client, STOCK_STAFF)

    response = client.post(UPLOAD_URL, {"sheet": csv_file("Site,SKU,Counted Qty\nams,MILK,8\n")})

    assert response.status_code == 302  # to its preview
    assert CountSheet.objects.get().lines.get().counted_qty == 8


def test_a_huge_bad_sheet_shows_its_first_200_problems_by_line_and_offers_them_all(client):
    # given 5,000 lines for a site that does not exist, and a structural problem at the end
    site_make("ams"), sku_make("MILK")
    logged_in(client, STOCK_STAFF)
    lines = "".join(f"nowhere-{index},MILK,1\n" for index in range(5_000))
    sheet = "site,sku,counted_qty\n" + lines + "ams\n"

    response = client.post(UPLOAD_URL, {"sheet": csv_file(sheet)})

    shown = response.context["problems"]
    assert len(shown) == 200
    assert [line for line, _ in shown] == list(range(2, 202))  # sorted by line
    assert "<strong>5001 problems</strong>, by line: the first 200 below, and 4801 more" in (
        response.text
    )
    download = client.get(response.context["problems_url"])
    rows = download.content.decode().splitlines()
    assert download["Content-Disposition"] == 'attachment; filename="count-sheet-problems.csv"'
    assert rows[0] == "line,problem"
    assert len(rows) == 5_002
    assert rows[1] == "2,unknown site 'nowhere-0'"
    assert rows[-1] == '5002,"expected 3 fields, found 1"'
    assert not CountSheet.objects.exists()


def test_someone_else_cannot_download_a_users_problems(client):
    site_make("ams")
    logged_in(client, STOCK_STAFF)
    response = client.post(UPLOAD_URL, {"sheet": csv_file("site,sku,counted_qty\nams,GHOST,1\n")})
    url = response.context["problems_url"]

    logged_in(client, STOCK_STAFF)  # another clerk

    assert client.get(url).status_code == 404


def test_a_blank_template_is_offered_on_the_upload_page(client):
    logged_in(client, STOCK_STAFF)

    page = client.get(UPLOAD_URL).text
    template = client.get(reverse("admin:corrections_countsheet_template"))

    assert 'href="/admin/corrections/countsheet/template.csv" download' in page
    assert template.content == b"site,sku,counted_qty\r\n"
    assert template["Content-Type"] == "text/csv; charset=utf-8"


def test_admin_lists_show_money_with_the_currency_and_two_decimals(client):
    sku_make("GEAR", unit_cost="2050.0000")
    client.force_login(user_make(is_staff=True, is_superuser=True))

    page = client.get("/admin/inventory_ops/sku/").text

    assert "2,050.00 USD" in page
    assert "2050.0000" not in page


def test_an_empty_sheet_is_refused_saying_what_a_sheet_starts_with():
    with pytest.raises(CountSheetInvalid) as refusal:
        count_sheet_parse(b"")

    assert refusal.value.problems == [
        (None, "the file is empty: expected a header site,sku,counted_qty")
    ]


def test_a_sheet_longer_than_the_limit_is_refused_at_its_first_line_too_many():
    lines = "".join(f"ams,MILK,{number % 7}\n" for number in range(MAX_LINES + 1))

    with pytest.raises(CountSheetInvalid) as refusal:
        count_sheet_parse(f"site,sku,counted_qty\n{lines}".encode())

    # the header is line 1, so the line one past the limit is line MAX_LINES + 2
    assert (MAX_LINES + 2, f"too many lines: at most {MAX_LINES} per sheet") in (
        refusal.value.problems
    )


def test_a_line_with_an_empty_site_and_sku_is_refused_naming_both():
    site_make("ams")
    sku_make("MILK")

    with pytest.raises(CountSheetInvalid) as refusal:
        count_sheet_parse(b"site,sku,counted_qty\nams,MILK,3\n,,4\n")

    assert refusal.value.problems == [(3, "site is empty; sku is empty")]


def test_the_count_sheet_list_offers_an_upload_to_stock_staff_not_to_managers(client):
    upload_link = f'href="{UPLOAD_URL}"'

    logged_in(client, STOCK_STAFF)
    assert upload_link in client.get("/admin/corrections/countsheet/").text

    logged_in(client, MANAGERS)
    assert upload_link not in client.get("/admin/corrections/countsheet/").text
