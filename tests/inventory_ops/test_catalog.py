from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from core.roles import MANAGERS
from ledger.catalog import SiteRow, SkuRow
from ledger.exceptions import CatalogImportNotAllowed
from ledger.models import Site, Sku
from ledger.services import catalog_import
from tests.builders import user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def write(tmp_path):
    def write(name: str, text: str | bytes):
        path = tmp_path / name
        if isinstance(text, str):
            text = text.encode()
        path.write_bytes(text)
        return path

    return write


def test_import_creates_then_updates_sites_and_skus(write, capsys):
    sites = write(
        "sites.csv", "code,name,timezone\nams,Amsterdam DC,Europe/Amsterdam\nrtm,Rotterdam\n"
    )
    skus = write(
        "skus.csv", "code,name,unit_cost,reorder_point\nMILK-1L,Milk,0.95,40\nEGGS,Eggs,2.1,\n"
    )

    call_command("import_catalog", sites=sites, skus=skus)

    assert "2 sites created" in capsys.readouterr().out
    assert Site.objects.get(code="ams").timezone == "Europe/Amsterdam"
    assert Site.objects.get(code="rtm").timezone == "UTC"
    milk = Sku.objects.get(code="MILK-1L")
    assert (milk.unit_cost, milk.reorder_point) == (Decimal("0.95"), 40)
    assert Sku.objects.get(code="EGGS").reorder_point is None

    call_command(
        "import_catalog", skus=write("more.csv", "code,name,unit_cost\nMILK-1L,Milk 1 L,1.05\n")
    )

    milk.refresh_from_db()
    assert (milk.name, milk.unit_cost, milk.reorder_point) == ("Milk 1 L", Decimal("1.05"), 40)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "code,name,unit_cost\nA,Apple,1.00\nB,Banana,cheap\n",
            "line 3, column unit_cost: 'cheap' is not a decimal",
        ),
        ("code,name,unit_cost\nA,Apple,-1\n", "line 2, column unit_cost"),
        (
            "code,name,unit_cost\nA,Apple,1\nA,Again,2\n",
            "line 3, column code: 'A' already given on line 2",
        ),
        ("code,name,unit_cost,reorder_point\nA,Apple,1,lots\n", "line 2, column reorder_point"),
        ("code,name,unit_cost\nA b,Apple,1\n", "line 2, column code"),
        ("code,name,unit_cost\nA,,1\n", "line 2, column name"),
        ("code,name\nA,Apple\n", "line 1 (header): missing column(s) unit_cost"),
        ("code,name,unit_cost,colour\nA,Apple,1,red\n", "unknown column(s) colour"),
        ("code,name,unit_cost\nA,Apple,1,extra\n", "line 2: 4 values for 3 columns"),
        ('code,name,unit_cost\nA,"Apple,1\n', "unreadable CSV"),
        (b"code,name,unit_cost\nA,\xff\xfe,1\n", "line 2: not valid UTF-8"),
        ("", "the file is empty"),
    ],
)
def test_a_malformed_sku_file_names_line_and_column_and_writes_nothing(write, content, expected):
    sites = write("sites.csv", "code,name\nams,Amsterdam\n")
    skus = write("skus.csv", content)

    with pytest.raises(CommandError) as raised:
        call_command("import_catalog", sites=sites, skus=skus)

    assert expected in str(raised.value)
    assert "nothing imported" in str(raised.value)
    assert not Site.objects.exists()
    assert not Sku.objects.exists()


def test_a_malformed_site_file_lists_every_problem(write):
    sites = write("sites.csv", "code,name,timezone\nok,Fine\nbad code,X\nams,Y,Mars/Olympus\n")

    with pytest.raises(CommandError) as raised:
        call_command("import_catalog", sites=sites)

    message = str(raised.value)
    assert "line 3, column code" in message
    assert "line 4, column timezone: 'Mars/Olympus' is not a known time zone" in message
    assert not Site.objects.exists()


def test_import_needs_a_file_and_reports_a_missing_one(tmp_path):
    with pytest.raises(CommandError, match="give --sites FILE, --skus FILE, or both"):
        call_command("import_catalog")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_catalog", skus=tmp_path / "nope.csv")


def test_admin_catalog_import_shows_each_error_and_writes_nothing(client):
    admin = user_make(is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.post(
        "/admin/inventory_ops/sku/import-catalog/",
        {"skus": SimpleUploadedFile("skus.csv", b"code,name,unit_cost\nA,Apple,abc\n")},
    )

    assert response.status_code == 200
    assert "skus.csv line 2, column unit_cost" in response.content.decode()
    assert not Sku.objects.exists()

    response = client.post(
        "/admin/inventory_ops/sku/import-catalog/",
        {"skus": SimpleUploadedFile("skus.csv", b"code,name,unit_cost\nA,Apple,1.25\n")},
    )

    assert response.status_code == 302
    assert Sku.objects.get(code="A").unit_cost == Decimal("1.25")
    entry = LogEntry.objects.get(object_id=str(Sku.objects.get(code="A").pk))
    assert (entry.user, entry.change_message) == (admin, "Imported from a catalog file.")


def test_the_catalog_import_is_refused_and_not_offered_without_permission_to_add(client):
    client.force_login(user_make(role=MANAGERS, is_staff=True))

    listing = client.get("/admin/inventory_ops/sku/")
    response = client.post(
        "/admin/inventory_ops/sku/import-catalog/",
        {"skus": SimpleUploadedFile("skus.csv", b"code,name,unit_cost\nA,Apple,1.25\n")},
    )

    assert listing.status_code == 200
    assert "import-catalog/" not in listing.content.decode()
    assert response.status_code == 403
    assert not Sku.objects.exists()


def test_the_catalog_service_refuses_a_person_without_permission_and_writes_nothing():
    # Given rows parsed from a good file, and a manager (who may view, not edit, the catalog)
    sites = [SiteRow(code="ams", name="Amsterdam DC", timezone="Europe/Amsterdam")]
    skus = [SkuRow(code="MILK-1L", name="Milk", unit_cost=Decimal("0.95"), reorder_point=40)]
    manager = user_make(role=MANAGERS)

    # When the manager asks the service itself to import them
    with pytest.raises(CatalogImportNotAllowed) as refused:
        catalog_import(sites=sites, skus=skus, imported_by=manager)

    # Then it says why, and nothing was written
    assert "add and change sites and SKUs" in str(refused.value)
    assert not Site.objects.filter(code="ams").exists()
    assert not Sku.objects.filter(code="MILK-1L").exists()
