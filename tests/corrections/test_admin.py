from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from corrections.models import Correction, CorrectionStatus
from corrections.services import CorrectionDraft, corrections_request
from ledger.models import Movement, StockLevel
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/corrections/correction/add/"


def logged_in(client, role):
    user = user_make(role=role, is_staff=True)
    client.force_login(user)
    return user


def stocked(qty=10, unit_cost="2.00", **sku_fields):
    site, sku = site_make(), sku_make(unit_cost=unit_cost, **sku_fields)
    movements_record(requests=[receive(site, sku, qty)])
    return site, sku


def on_hand(site, sku) -> int:
    return StockLevel.objects.get(site=site, sku=sku).on_hand


def test_stock_staff_previews_then_applies_a_correction(client):
    site, sku = stocked(10)
    logged_in(client, STOCK_STAFF)
    form = {"site": site.code, "sku": sku.code, "counted_qty": "7", "reason": "recount", "note": ""}

    preview = client.post(ADD_URL, {**form, "_preview": "1"})

    assert preview.status_code == 200
    assert preview.context["preview"].on_hand_before == 10
    assert preview.context["preview"].on_hand_after == 7
    assert 'data-preview="value">6.00 USD<' in preview.text
    assert on_hand(site, sku) == 10  # a preview changes nothing

    applied = client.post(ADD_URL, {**form, "_apply": "1"}, follow=True)

    assert on_hand(site, sku) == 7
    correction = Correction.objects.get()
    assert applied.redirect_chain[-1][0] == f"/admin/corrections/correction/{correction.pk}/change/"
    assert "10 → 7" in applied.text


def test_a_bad_correction_form_names_the_field_and_applies_nothing(client):
    site, sku = stocked(10)
    logged_in(client, STOCK_STAFF)

    response = client.post(
        ADD_URL,
        {
            "site": site.code,
            "sku": "NO-SUCH",
            "counted_qty": "3",
            "delta": "1",
            "reason": "x",
            "_apply": "1",
        },
    )

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["sku"] == ["No SKU has this code."]
    assert "reason" in errors and "delta" in errors
    assert not Correction.objects.exists()
    assert on_hand(site, sku) == 10


@pytest.mark.parametrize("role", [ON_CALL, None])
def test_users_who_may_not_correct_get_403(client, role):
    site, sku = stocked(10)
    logged_in(client, role)

    response = client.post(
        ADD_URL,
        {"site": site.code, "sku": sku.code, "delta": "1", "reason": "found", "_apply": "1"},
    )

    assert response.status_code == 403
    assert on_hand(site, sku) == 10


def test_approval_flow_in_the_admin(client, settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    site, sku = stocked(10, unit_cost="5.00")
    staff = logged_in(client, STOCK_STAFF)
    client.post(
        ADD_URL,
        {"site": site.code, "sku": sku.code, "delta": "-4", "reason": "lost", "_apply": "1"},
    )
    correction = Correction.objects.get()
    assert correction.status == CorrectionStatus.PENDING
    approve_url = reverse("admin:corrections_correction_approve", args=[correction.pk])

    # the requester, and stock staff in general, may not approve
    assert client.post(approve_url).status_code == 403
    # a manager who requested it may not approve it either
    manager_requester = user_make(role=MANAGERS, is_staff=True)
    [own] = corrections_request(
        drafts=[CorrectionDraft(site=site.code, sku=sku.code, reason="found", delta=9)],
        requested_by=manager_requester,
    )
    client.force_login(manager_requester)
    own_url = reverse("admin:corrections_correction_approve", args=[own.pk])
    assert client.post(own_url).status_code == 403
    assert on_hand(site, sku) == 10

    client.force_login(user_make(role=MANAGERS, is_staff=True))
    page = client.get(reverse("admin:corrections_correction_change", args=[correction.pk]))
    assert "Approve and apply" in page.text
    # and is told why it waits and what approving does
    assert "Worth 20.00: above the threshold. Approving applies it now" in page.text
    client.post(approve_url, {"note": "checked the shelf"})

    assert on_hand(site, sku) == 6
    correction.refresh_from_db()
    assert correction.status == CorrectionStatus.APPLIED
    assert correction.requested_by == staff


def test_an_applied_correction_cannot_be_edited_or_deleted_in_the_admin(client):
    site, sku = stocked(10)
    user = logged_in(client, MANAGERS)
    [correction] = corrections_request(
        drafts=[CorrectionDraft(site=site.code, sku=sku.code, reason="found", delta=1)],
        requested_by=user,
    )
    change_url = reverse("admin:corrections_correction_change", args=[correction.pk])

    client.post(change_url, {"delta": "50", "reason": "found"})
    delete = client.post(
        reverse("admin:corrections_correction_delete", args=[correction.pk]), {"post": "yes"}
    )

    assert delete.status_code == 403
    correction.refresh_from_db()
    assert correction.delta == 1
    assert on_hand(site, sku) == 11


def test_reversing_from_the_admin(client):
    site, sku = stocked(10)
    user = logged_in(client, STOCK_STAFF)
    [correction] = corrections_request(
        drafts=[CorrectionDraft(site=site.code, sku=sku.code, reason="damaged", delta=-3)],
        requested_by=user,
    )

    client.post(
        reverse("admin:corrections_correction_reverse", args=[correction.pk]), {"note": "oops"}
    )

    assert on_hand(site, sku) == 10
    assert Correction.objects.get(reverses=correction).applied_delta == 3


def test_stock_levels_and_movements_are_read_only_in_the_admin(client):
    site, sku = stocked(10)
    logged_in(client, MANAGERS)
    level = StockLevel.objects.get()
    movement = Movement.objects.get()

    client.post(
        reverse("admin:inventory_ops_stocklevel_change", args=[level.pk]), {"on_hand": "99"}
    )
    client.post(
        reverse("admin:inventory_ops_movement_change", args=[movement.pk]), {"on_hand_delta": "99"}
    )

    assert client.get(reverse("admin:inventory_ops_stocklevel_add")).status_code == 403
    assert on_hand(site, sku) == 10
    assert Movement.objects.get().on_hand_delta == 10


class _FieldCollector(HTMLParser):
    """The values a browser submits with the form posting to `action` (inputs, selected options,
    textareas), as they are on the page, before any button."""

    def __init__(self, action):
        super().__init__()
        self.action, self.inside, self.fields = action, False, {}
        self.select = self.textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("action") == self.action
        elif not self.inside:
            return
        elif tag == "input" and attrs.get("type") != "submit" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""
        elif tag == "select":
            self.select = attrs["name"]
        elif tag == "option" and self.select:
            if "selected" in attrs or self.select not in self.fields:  # else the first
                self.fields[self.select] = attrs.get("value") or ""
        elif tag == "textarea":
            self.textarea = attrs["name"]
            self.fields[self.textarea] = ""

    def handle_data(self, data):
        if self.textarea:
            self.fields[self.textarea] += data.removeprefix("\n")

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def form_fields(page, action) -> dict[str, str]:
    collector = _FieldCollector(action)
    collector.feed(page.text)
    assert collector.fields, f"no form posting to {action}"
    return collector.fields


def test_bulk_correction_from_the_stock_level_list(client):
    site = site_make()
    first, second = sku_make(), sku_make()
    movements_record(requests=[receive(site, first, 10), receive(site, second, 20)])
    logged_in(client, STOCK_STAFF)
    levels = list(StockLevel.objects.order_by("pk"))
    bulk_url = reverse("admin:corrections_correction_bulk")

    action = client.post(
        reverse("admin:inventory_ops_stocklevel_changelist"),
        {"action": "correct_selected", "_selected_action": [level.pk for level in levels]},
    )
    assert action.status_code == 302
    form_page = client.get(action.url)
    assert form_page.status_code == 200

    # the page's own form, filled in as a person would: a count on the first line only
    form = form_fields(form_page, bulk_url)
    assert [form["form-0-level_id"], form["form-1-level_id"]] == [str(lv.pk) for lv in levels]
    form.update({"form-0-counted_qty": "8", "reason": "recount", "note": "cycle count aisle 4"})
    preview = client.post(bulk_url, {**form, "_preview": "1"})

    assert f'data-preview-after="{levels[0].pk}">8<' in preview.text
    assert 'name="_apply"' in preview.text
    assert on_hand(site, first) == 10  # a preview changes nothing

    # the second step posts the preview page's form, as it stands
    applied = client.post(bulk_url, {**form_fields(preview, bulk_url), "_apply": "1"}, follow=True)

    assert applied.redirect_chain[-1][0] == reverse("admin:corrections_correction_changelist")
    assert on_hand(site, first) == 8
    assert on_hand(site, second) == 20  # a blank line is skipped
    assert Correction.objects.get().note == "cycle count aisle 4"


def test_the_bulk_action_is_refused_to_users_who_may_not_correct(client):
    stocked(10)
    logged_in(client, ON_CALL)

    response = client.get(reverse("admin:corrections_correction_bulk") + "?levels=1")

    assert response.status_code == 403


def test_a_sku_name_with_script_is_inert_on_the_correction_pages(client):
    site, sku = stocked(10, name="<script>alert('sku')</script>")
    user = logged_in(client, STOCK_STAFF)
    [correction] = corrections_request(
        drafts=[CorrectionDraft(site=site.code, sku=sku.code, reason="found", delta=1)],
        requested_by=user,
    )

    pages = [
        client.post(
            ADD_URL,
            {"site": site.code, "sku": sku.code, "delta": "1", "reason": "found", "_preview": "1"},
        ),
        client.get(reverse("admin:corrections_correction_changelist")),
        client.get(reverse("admin:corrections_correction_change", args=[correction.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        assert "<script>alert('sku')" not in page.text
        assert "&lt;script&gt;alert(" in page.text


def test_a_sku_name_with_script_is_inert_on_the_bulk_correction_page(client):
    stocked(10, name="<script>alert('bulk')</script>")
    logged_in(client, STOCK_STAFF)
    level = StockLevel.objects.get()

    page = client.get(reverse("admin:corrections_correction_bulk") + f"?levels={level.pk}")

    assert page.status_code == 200
    assert "<script>alert('bulk')" not in page.text
    assert "&lt;script&gt;alert(" in page.text


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("delta", "9223372036854775807", "less than or equal to 1000000000"),
        ("delta", "-9223372036854775808", "greater than or equal to -1000000000"),
        ("counted_qty", "99999999999999999999", "less than or equal to 1000000000"),
        ("counted_qty", "1" + "0" * 5000, "Enter a whole number."),
    ],
)
@pytest.mark.parametrize("button", ["_preview", "_apply"])
def test_a_quantity_beyond_what_the_ledger_holds_is_a_form_error_on_preview_and_apply(
    client, field, value, error, button
):
    # given a stocked level and stock staff on the correction form
    site, sku = stocked(10)
    logged_in(client, STOCK_STAFF)
    form = {"site": site.code, "sku": sku.code, "reason": "recount", field: value, button: "1"}
    # when they ask for a quantity no stock level column can hold
    response = client.post(ADD_URL, form)
    # then the form names the field and why, and nothing is recorded
    assert response.status_code == 200
    assert any(error in message for message in response.context["form"].errors[field])
    assert response.context["preview"] is None
    assert not Correction.objects.exists()
    assert on_hand(site, sku) == 10


@pytest.mark.parametrize("button", ["_preview", "_apply"])
def test_a_correction_worth_more_than_can_be_recorded_is_refused_on_preview_and_apply(
    client, button
):
    # given a SKU at the highest unit cost a SKU can have
    site, sku = stocked(10, unit_cost="9999999999.9999")
    logged_in(client, STOCK_STAFF)
    form = {"site": site.code, "sku": sku.code, "reason": "found", "delta": "1000000000"}
    # when a correction of a billion units is previewed or applied
    response = client.post(ADD_URL, {**form, button: "1"})
    # then the form says it is worth too much to record, and nothing changes
    assert response.status_code == 200
    assert "more than can be recorded" in str(response.context["form"].non_field_errors())
    assert not Correction.objects.exists()
    assert on_hand(site, sku) == 10


def test_a_bulk_line_beyond_the_ledger_is_a_form_error_and_applies_nothing(client):
    # given two levels on the bulk correction page
    site = site_make()
    first, second = sku_make(), sku_make()
    movements_record(requests=[receive(site, first, 10), receive(site, second, 20)])
    logged_in(client, STOCK_STAFF)
    levels = list(StockLevel.objects.order_by("pk"))
    form = {
        "levels": f"{levels[0].pk},{levels[1].pk},99999999999999999999,²",
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-0-level_id": levels[0].pk,
        "form-0-delta": "9223372036854775807",
        "form-1-level_id": levels[1].pk,
        "form-1-counted_qty": "5",
        "reason": "recount",
    }
    for button in ("_preview", "_apply"):
        # when one line asks for more than a level can hold
        response = client.post(reverse("admin:corrections_correction_bulk"), {**form, button: "1"})
        # then the page shows the line's error and nothing is applied
        assert response.status_code == 200
        assert "less than or equal to 1000000000" in response.text
    assert not Correction.objects.exists()
    assert (on_hand(site, first), on_hand(site, second)) == (10, 20)


class _FormCollector(HTMLParser):
    """Each <form>'s action, with the actions of the forms it sits in (browsers drop those)."""

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.forms: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "form":
            action = dict(attrs).get("action") or "(this page)"
            self.forms[action] = list(self.open)
            self.open.append(action)

    def handle_endtag(self, tag):
        if tag == "form" and self.open:
            self.open.pop()


def forms_on(page) -> dict[str, list[str]]:
    collector = _FormCollector()
    collector.feed(page.text)
    return collector.forms


def test_the_decision_and_reversal_forms_are_not_nested_in_the_admin_form(client, settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    site, sku = stocked(10, unit_cost="5.00")
    staff = user_make(role=STOCK_STAFF, is_staff=True)
    waiting, small = corrections_request(
        drafts=[
            CorrectionDraft(site=site.code, sku=sku.code, reason="lost", delta=-4),
            CorrectionDraft(site=site.code, sku=sku.code, reason="found", delta=1),
        ],
        requested_by=staff,
    )
    approve_url = reverse("admin:corrections_correction_approve", args=[waiting.pk])
    reverse_url = reverse("admin:corrections_correction_reverse", args=[small.pk])

    logged_in(client, MANAGERS)
    decision_page = client.get(reverse("admin:corrections_correction_change", args=[waiting.pk]))
    client.force_login(staff)
    reverse_page = client.get(reverse("admin:corrections_correction_change", args=[small.pk]))

    assert forms_on(decision_page)[approve_url] == []
    assert (
        'formaction="{}"'.format(reverse("admin:corrections_correction_reject", args=[waiting.pk]))
        in decision_page.text
    )
    assert forms_on(reverse_page)[reverse_url] == []


def test_every_decision_in_the_admin_is_in_the_history(client, settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    site, sku = stocked(10, unit_cost="5.00")
    staff = logged_in(client, STOCK_STAFF)
    for delta in ("-4", "-3"):
        client.post(
            ADD_URL,
            {"site": site.code, "sku": sku.code, "delta": delta, "reason": "lost", "_apply": "1"},
        )
    first, second = Correction.objects.order_by("pk")
    manager = logged_in(client, MANAGERS)

    # (an approval needs no note; a rejection does)
    client.post(reverse("admin:corrections_correction_approve", args=[first.pk]), {"note": ""})
    client.post(
        reverse("admin:corrections_correction_reject", args=[second.pk]), {"note": "miscount"}
    )
    client.force_login(staff)
    client.post(reverse("admin:corrections_correction_reverse", args=[first.pk]), {"note": "no"})
    reversal = Correction.objects.get(reverses=first)

    def history(correction):
        return list(
            LogEntry.objects.filter(object_id=str(correction.pk))
            .order_by("pk")
            .values_list("user__username", "action_flag", "change_message")
        )

    assert history(first) == [
        (staff.username, ADDITION, "Requested -4 (lost), worth 20.00: waits for approval."),
        (manager.username, CHANGE, "Approved and applied (-4)."),
        (staff.username, CHANGE, f"Reversal requested: correction #{reversal.pk}."),
    ]
    assert history(second)[-1] == (manager.username, CHANGE, "Rejected. Note: miscount")
    assert history(reversal) == [
        (staff.username, ADDITION, "Requested +4 (lost), worth 20.00: waits for approval."),
    ]
    history_page = client.get(reverse("admin:corrections_correction_history", args=[first.pk]))
    assert "Approved and applied (-4)." in history_page.text


def test_the_preview_warns_when_a_correction_takes_stock_below_zero(client):
    site, sku = stocked(10)
    logged_in(client, STOCK_STAFF)
    form = {"site": site.code, "sku": sku.code, "reason": "lost", "note": "", "_preview": "1"}

    below = client.post(ADD_URL, {**form, "delta": "-15"})
    to_zero = client.post(ADD_URL, {**form, "delta": "-10"})

    assert 'data-preview-warning="negative">This takes on hand below zero, to -5' in below.text
    assert "data-preview-warning" not in to_zero.text
    assert on_hand(site, sku) == 10  # a warning, not a refusal: a preview changes nothing
