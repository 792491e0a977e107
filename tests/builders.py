"""Small builders for domain objects in tests (no frozen fixture files)."""

import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.utils import timezone

from ledger.models import MovementKind, Site, Sku
from ledger.services import MovementRequest

_sequence = itertools.count(1)

# One hash per password for the whole run: hashing with the production hasher takes about a
# second a user on this machine (several under load), and hundreds of tests make users. Logging
# in still checks the password against a real hash of the production hasher, which the
# child processes (Daphne, workers) verify as they would in production.
_password_hashes: dict[str, str] = {}


def site_make(code: str | None = None, **fields) -> Site:
    code = code or f"site-{next(_sequence)}"
    return Site.objects.create(code=code, name=fields.pop("name", f"Site {code}"), **fields)


def sku_make(code: str | None = None, unit_cost: str | Decimal = "2.50", **fields) -> Sku:
    code = code or f"SKU-{next(_sequence)}"
    return Sku.objects.create(
        code=code,
        name=fields.pop("name", f"Product {code}"),
        unit_cost=Decimal(unit_cost),
        **fields,
    )


def user_make(username: str | None = None, *, role: str | None = None, **fields):
    username = username or f"user{next(_sequence)}"
    password = fields.pop("password", "pw-for-tests")
    if password not in _password_hashes:
        _password_hashes[password] = make_password(password)
    user = get_user_model().objects.create_user(username=username, password=None, **fields)
    user.password = _password_hashes[password]
    user.save(update_fields=["password"])
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def receive(site: Site, sku: Sku, qty: int, **fields) -> MovementRequest:
    return MovementRequest(
        site=site.code,
        sku=sku.code,
        kind=MovementKind.RECEIVED,
        on_hand_delta=qty,
        occurred_at=fields.pop("occurred_at", timezone.now()),
        **fields,
    )


# One page of each read path (dashboards, lineage, on-call, admin, API) for tests that check
# the product stays up whatever the database holds.
READ_PATHS = [
    "/",
    "/sites/north/",
    "/skus/A/?site=north",
    "/oncall/",
    "/admin/inventory_ops/movement/",
    "/admin/ingest/feedsource/",
    "/admin/ingest/deadletter/",
    "/api/kpis",
    "/api/stock",
]


def dispatch(site: Site, sku: Sku, qty: int, **fields) -> MovementRequest:
    """Units leaving on an order (on_hand may go negative, as an oversold feed makes it)."""
    return MovementRequest(
        site=site.code,
        sku=sku.code,
        kind=MovementKind.ORDER_DISPATCHED,
        on_hand_delta=-qty,
        occurred_at=fields.pop("occurred_at", timezone.now()),
        **fields,
    )
