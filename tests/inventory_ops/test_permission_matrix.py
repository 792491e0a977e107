"""Who may open what: every URL and every admin action, for every kind of visitor.

The URLs come from the URLconf and the actions from the admin's registry, so a new URL or
action without a rule here makes `test_every_url_and_action_has_a_rule` fail: decide who may
use it, write it down below (and in docs/roles.md), and the matrix checks it.

An answer is one of:
- `ok`: past the gate (any answer below 500 that is not 401, 403 or a login redirect; a 404
  for a made-up job id, a redirect with a message for a wrong state, still got past the gate);
- `login`: redirected to a login page; `denied`: 403; `unauthorized`: 401 (token APIs).
"""

from dataclasses import dataclass, field
from functools import cache
from http.cookies import SimpleCookie
from pprint import pformat

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from tests.access import ANONYMOUS, NO_GROUP, SUPERUSER, VISITORS, World, world_make

pytestmark = pytest.mark.django_db

OK, LOGIN, DENIED, UNAUTHORIZED = "ok", "login", "denied", "unauthorized"
M, S, OC, SU = MANAGERS, STOCK_STAFF, ON_CALL, SUPERUSER
STAFF = (NO_GROUP, M, S, OC, SU)  # every visitor is staff, as load_demo makes them, but anonymous


def allowed(*who: str, anonymous: str = LOGIN, others: str = DENIED) -> dict[str, str]:
    """The expected answer per visitor: `ok` for `who`, else `anonymous` or `others`."""
    return {
        visitor: OK if visitor in who else anonymous if visitor == ANONYMOUS else others
        for visitor in VISITORS
    }


def everyone(answer: str = OK) -> dict[str, str]:
    return dict.fromkeys(VISITORS, answer)


@dataclass(frozen=True)
class Rule:
    expected: dict[str, str]
    path: object = None  # str, or a function of the World; None: the route as it is
    method: str = "get"
    data: dict = field(default_factory=dict)


# --- The admin's model pages: who may view, add, change and delete each model ----------------
# (`admin/<app>/<model>/` and its add, change, history and delete pages.)
ROLES_VIEW = (M, S, OC, SU)
MODEL_ACCESS: dict[str, dict[str, tuple[str, ...]]] = {
    "auth.group": {"view": (SU,), "add": (SU,), "change": (SU,), "delete": (SU,)},
    "auth.user": {"view": (SU,), "add": (SU,), "change": (SU,), "delete": (SU,)},
    # login throttling (django-axes): superusers unlock by deleting an attempt
    "axes.accessattempt": {"view": (SU,), "change": (SU,), "delete": (SU,)},
    "axes.accesslog": {"view": (SU,), "change": (SU,), "delete": (SU,)},
    "axes.accessfailurelog": {"view": (SU,), "change": (SU,), "delete": (SU,)},
    "inventory_ops.site": {"view": ROLES_VIEW, "add": (SU,), "change": (SU,), "delete": (SU,)},
    "inventory_ops.sku": {"view": ROLES_VIEW, "add": (SU,), "change": (SU,), "delete": (SU,)},
    # the ledger is read-only for everyone: it changes through corrections and counts
    "inventory_ops.stocklevel": {"view": ROLES_VIEW},
    "inventory_ops.movement": {"view": ROLES_VIEW},
    "corrections.correction": {"view": ROLES_VIEW, "add": (M, S, SU)},
    "corrections.countsheet": {"view": (M, S, SU), "add": (S, SU)},
    "ingest.feedsource": {"view": (M, OC, SU), "add": (SU,), "change": (SU,), "delete": (SU,)},
    "ingest.ingestbatch": {"view": (M, OC, SU)},
    "ingest.heldevent": {"view": (M, OC, SU)},
    "ingest.deadletter": {"view": (M, OC, SU)},
    "oncall.alertrule": {
        "view": (M, OC, SU),
        "add": (M, OC, SU),
        "change": (M, OC, SU),
        "delete": (OC, SU),
    },
    "oncall.alert": {"view": (M, OC, SU)},
    "oncall.runbook": {"view": ROLES_VIEW, "add": (OC, SU), "change": (OC, SU), "delete": (SU,)},
    "oncall.remediationaction": {"view": (M, OC, SU)},
    # where alerts page people: on-call sets them up, managers look
    "oncall.notificationchannel": {
        "view": (M, OC, SU),
        "add": (OC, SU),
        "change": (OC, SU),
        "delete": (OC, SU),
    },
    "oncall.notificationdelivery": {"view": (M, OC, SU)},
    # silences are set on the console or here, then only ended (an action), never edited
    "oncall.silence": {"view": (M, OC, SU), "add": (OC, SU), "change": (OC, SU)},
    # one row per SLO, made by migration: never added or deleted; on-call sets the targets
    "slos.slotarget": {"view": (M, OC, SU), "change": (OC, SU)},
}

# --- The admin's actions: who is offered each one (Django refuses any other) -----------------
ACTION_ACCESS: dict[tuple[str, str], tuple[str, ...]] = {
    ("auth.group", "delete_selected"): (SU,),
    ("auth.user", "delete_selected"): (SU,),
    ("axes.accessattempt", "delete_selected"): (SU,),
    ("axes.accessattempt", "cleanup_expired_attempts"): (SU,),
    ("axes.accesslog", "delete_selected"): (SU,),
    ("axes.accessfailurelog", "delete_selected"): (SU,),
    ("inventory_ops.site", "delete_selected"): (SU,),
    ("inventory_ops.sku", "delete_selected"): (SU,),
    ("inventory_ops.stocklevel", "correct_selected"): (M, S, SU),
    ("corrections.correction", "approve_selected"): (M, SU),
    ("ingest.feedsource", "delete_selected"): (SU,),
    # rotating a token cuts the producer off: feed-source administrators only (superusers)
    ("ingest.feedsource", "rotate_tokens"): (SU,),
    ("ingest.feedsource", "end_token_grace"): (SU,),
    ("ingest.deadletter", "replay_selected"): (OC, SU),
    ("ingest.deadletter", "discard_selected"): (OC, SU),
    ("oncall.alertrule", "delete_selected"): (OC, SU),
    ("oncall.runbook", "delete_selected"): (SU,),
    ("oncall.notificationchannel", "delete_selected"): (OC, SU),
    ("oncall.silence", "end_now"): (OC, SU),
}


def _pk(label: str):
    return lambda world: world.pk(label)


def _admin(label: str, suffix: str):
    app_label, model_name = label.split(":")[0].split(".")
    return lambda world: f"/admin/{app_label}/{model_name}/{world.pk(label)}/{suffix}"


# --- Every other URL, by URL name (or by route when it has none) -----------------------------
RQ_PAGES = allowed(OC, SU)  # django-rq's pages: on-call only
PENDING_CORRECTION = "corrections.correction:pending"
PENDING_SHEET = "corrections.countsheet:pending"
RULES: dict[str, Rule] = {
    "favicon": Rule(everyone()),
    "healthz": Rule(everyone()),
    "readyz": Rule(everyone()),  # 503 without a worker: an answer, past any gate
    "metrics": Rule(allowed(OC, SU, anonymous=UNAUTHORIZED)),  # or a METRICS_TOKEN bearer
    "login": Rule(everyone()),
    "logout": Rule(everyone(LOGIN), method="post"),  # back to the login page
    # the dashboards and a SKU's lineage: any logged-in user (a TV kiosk account needs no role)
    "dashboards:home": Rule(allowed(*STAFF)),
    "dashboards:site": Rule(allowed(*STAFF), "/sites/ams/"),
    "dashboards:sku": Rule(allowed(*STAFF), "/skus/TEA/?site=ams"),
    # the stock browser: read-only, any logged-in user
    "dashboards:stock": Rule(allowed(*STAFF), "/stock/?q=TEA&site=ams"),
    "dashboards:couriers": Rule(allowed(*STAFF), "/couriers/?site=ams"),
    "dashboards:restock_csv": Rule(allowed(*STAFF), "/sites/ams/restock.csv"),
    "dashboards:slo_panel": Rule(allowed(*STAFF)),
    # the read API answers a session or a feed token; the ingest API a feed token only
    "api:kpis": Rule(allowed(*STAFF, anonymous=UNAUTHORIZED)),
    "api:stock": Rule(allowed(*STAFF, anonymous=UNAUTHORIZED)),
    "api:restock": Rule(allowed(*STAFF, anonymous=UNAUTHORIZED)),
    "api:slos": Rule(allowed(*STAFF, anonymous=UNAUTHORIZED)),
    "api:events_push": Rule(everyone(UNAUTHORIZED), method="post"),
    "api:batch_status": Rule(
        everyone(UNAUTHORIZED), "/api/ingest/batches/00000000-0000-0000-0000-000000000000"
    ),
    "api:source_status": Rule(everyone(UNAUTHORIZED)),
    "api:openapi-json": Rule(everyone()),
    "api:openapi-view": Rule(everyone()),
    "api:api-root": Rule(everyone()),
    # on-call: alerts for managers and on-call, their transitions and remediations for on-call,
    # runbooks for every role
    "oncall:console": Rule(allowed(M, OC, SU)),
    "oncall:alert": Rule(allowed(M, OC, SU), lambda w: f"/oncall/alerts/{w.pk('oncall.alert')}/"),
    "oncall:alert_transition": Rule(
        allowed(OC, SU),
        lambda w: f"/oncall/alerts/{w.pk('oncall.alert')}/acknowledge/",
        method="post",
        data={"note": "looking"},
    ),
    "oncall:remediation": Rule(
        allowed(OC, SU), "/oncall/remediations/rebuild-kpis/", method="post", data={"site": "ams"}
    ),
    "oncall:silence_create": Rule(
        allowed(OC, SU),
        "/oncall/silences/",
        method="post",
        data={"site": "ams", "minutes": "60", "reason": "stocktake"},
    ),
    "oncall:silence_end": Rule(
        allowed(OC, SU),
        lambda w: f"/oncall/silences/{w.pk('oncall.silence')}/end/",
        method="post",
    ),
    "oncall:runbooks": Rule(allowed(M, S, OC, SU)),
    "oncall:runbook": Rule(allowed(M, S, OC, SU), "/oncall/runbooks/negative-stock/"),
    "oncall:runbook_version": Rule(
        allowed(M, S, OC, SU), "/oncall/runbooks/negative-stock/versions/1/"
    ),
    # the admin site itself: any staff user (each page below checks its own permission)
    "admin:index": Rule(allowed(*STAFF)),
    "admin:login": Rule(everyone()),
    "admin:logout": Rule(everyone(LOGIN), method="post"),
    "admin:password_change": Rule(allowed(*STAFF)),
    "admin:password_change_done": Rule(allowed(*STAFF)),
    # without its parameters the autocomplete refuses everyone
    "admin:autocomplete": Rule(allowed(anonymous=LOGIN)),
    "admin:jsi18n": Rule(allowed(*STAFF)),
    "admin:view_on_site": Rule(allowed(*STAFF), "/admin/r/1/1/"),
    "admin:app_list": Rule(allowed(*STAFF), "/admin/corrections/"),
    "admin/(?P<url>.*)$": Rule(allowed(*STAFF), "/admin/no-such-page/"),
    # catalog import: who may add sites and SKUs
    "admin:inventory_ops_site_import_catalog": Rule(allowed(SU)),
    "admin:inventory_ops_sku_import_catalog": Rule(allowed(SU)),
    # corrections: stock staff and managers correct, managers approve
    "admin:corrections_correction_bulk": Rule(allowed(M, S, SU)),
    "admin:corrections_correction_waiting": Rule(allowed(M, SU)),
    "admin:corrections_correction_approve": Rule(
        allowed(M, SU), _admin(PENDING_CORRECTION, "approve/"), method="post"
    ),
    "admin:corrections_correction_reject": Rule(
        allowed(M, SU), _admin(PENDING_CORRECTION, "reject/"), method="post", data={"note": "no"}
    ),
    "admin:corrections_correction_reverse": Rule(
        allowed(M, S, SU), _admin("corrections.correction", "reverse/"), method="post"
    ),
    # count sheets: stock staff import and apply, managers decide the ones that wait
    "admin:corrections_countsheet_apply": Rule(
        allowed(S, SU), _admin("corrections.countsheet", "apply/"), method="post"
    ),
    "admin:corrections_countsheet_discard": Rule(
        allowed(S, SU), _admin("corrections.countsheet", "discard/"), method="post"
    ),
    # the blank template and a refused sheet's problems (a stranger's token: 404, past the gate)
    "admin:corrections_countsheet_template": Rule(allowed(S, SU)),
    "admin:corrections_countsheet_problems": Rule(
        allowed(S, SU), "/admin/corrections/countsheet/problems/stranger.csv"
    ),
    "admin:corrections_countsheet_approve": Rule(
        allowed(M, SU), _admin(PENDING_SHEET, "approve/"), method="post"
    ),
    "admin:corrections_countsheet_reject": Rule(
        allowed(M, SU), _admin(PENDING_SHEET, "reject/"), method="post", data={"note": "no"}
    ),
    # a notification channel's test-send: who may change channels (it posts to the world's
    # channel, a closed local port, and shows the refusal)
    "admin:oncall_notificationchannel_test_send": Rule(
        allowed(OC, SU), _admin("oncall.notificationchannel", "test-send/"), method="post"
    ),
    "admin:auth_user_password_change": Rule(
        allowed(SU), lambda w: f"/admin/auth/user/{w.pk('auth.user')}/password/"
    ),
    # django-rq's pages at /admin/rq/: on-call only (its JSON stats too)
    "django_rq:home": Rule(RQ_PAGES),
    "django_rq:home_json": Rule(RQ_PAGES, "/admin/rq/stats.json"),
    # django-rq's Prometheus exporter of the queues (mounted with prometheus-client installed)
    "django_rq:metrics": Rule(RQ_PAGES, "/admin/rq/metrics/"),
    "django_rq:jobs": Rule(RQ_PAGES),
    "django_rq:queue_details": Rule(RQ_PAGES),
    "django_rq:finished_jobs": Rule(RQ_PAGES),
    "django_rq:failed_jobs": Rule(RQ_PAGES),
    "django_rq:delete_failed_jobs": Rule(RQ_PAGES),
    "django_rq:scheduled_jobs": Rule(RQ_PAGES),
    "django_rq:started_jobs": Rule(RQ_PAGES),
    "django_rq:deferred_jobs": Rule(RQ_PAGES),
    "django_rq:clear": Rule(RQ_PAGES),
    "django_rq:requeue_all": Rule(RQ_PAGES),
    "django_rq:job_detail": Rule(RQ_PAGES),
    "django_rq:result_detail": Rule(RQ_PAGES),
    "django_rq:delete_job": Rule(RQ_PAGES),
    "django_rq:requeue_job": Rule(RQ_PAGES),
    "django_rq:enqueue_job": Rule(RQ_PAGES),
    "django_rq:stop_job": Rule(RQ_PAGES),
    "django_rq:confirm_action": Rule(RQ_PAGES),
    "django_rq:actions": Rule(RQ_PAGES),
    "django_rq:workers": Rule(RQ_PAGES),
    "django_rq:worker_details": Rule(RQ_PAGES),
}


def _model_rules() -> dict[str, Rule]:
    """The admin's own pages of each registered model, from MODEL_ACCESS."""
    rules = {}
    for label, access in MODEL_ACCESS.items():
        app_label, model_name = label.split(".")
        name = f"admin:{app_label}_{model_name}"
        viewers = (*access.get("view", ()), *access.get("change", ()))
        rules[f"{name}_changelist"] = Rule(allowed(*viewers))
        rules[f"{name}_add"] = Rule(allowed(*access.get("add", ())))
        rules[f"{name}_change"] = Rule(allowed(*viewers), _admin(label, "change/"))
        rules[f"{name}_history"] = Rule(allowed(*viewers), _admin(label, "history/"))
        rules[f"{name}_delete"] = Rule(allowed(*access.get("delete", ())), _admin(label, "delete/"))
        # the bare object URL redirects any staff user to the change page, which decides
        rules[f"admin/{app_label}/{model_name}/<path:object_id>/"] = Rule(
            allowed(*STAFF), _admin(label, "")
        )
    return rules


ALL_RULES = {**RULES, **_model_rules()}


def _patterns(patterns=None, prefix: str = "", namespace: str = ""):
    """(rule key, route) for every URL pattern: `namespace:name`, or the route if unnamed."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _patterns(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            key = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield key or route, route


@cache
def _routes() -> dict[str, str]:
    return dict(_patterns())


def _sample_path(route: str) -> str:
    """A concrete path for a route with converters (django-rq's: queue 0, made-up ids)."""
    samples = {
        "<int:queue_index>": "0",
        "<int:connection_index>": "0",
        "<int:scheduler_index>": "0",
        "<str:job_id>": "no-such-job",
        "<str:result_id>": "no-such-result",
        "<str:key>": "no-such-worker",
        "<str:scheduler_name>": "no-such-scheduler",
        "<path:cron_job_name>": "no-such-cron-job",
    }
    path = route
    for converter, value in samples.items():
        path = path.replace(converter, value)
    assert "<" not in path and "^" not in path, f"give a path for {route}"
    return "/" + path


def _actions_offered(user, label: str) -> set[str]:
    """The actions Django would run for this user: those of a list they may open."""
    model_admin = admin.site.get_model_admin(_model_class(label))
    request = RequestFactory().get("/admin/")
    request.user = user
    if not model_admin.has_view_or_change_permission(request):
        return set()  # the list answers 403, so none of its actions runs
    return set(model_admin.get_actions(request))


def _model_class(label: str):
    from django.apps import apps

    return apps.get_model(label)


def _registered_labels() -> set[str]:
    return {model._meta.label_lower for model in admin.site._registry}


def test_every_url_and_action_has_a_rule():
    # every URL of the URLconf has a rule, and every rule a URL
    assert sorted(set(_routes()) - set(ALL_RULES)) == [], "URLs without a rule"
    assert sorted(set(ALL_RULES) - set(_routes())) == [], "rules without a URL"
    # every model in the admin has its access written down
    assert sorted(_registered_labels() ^ set(MODEL_ACCESS)) == []


def test_every_admin_action_has_a_rule(django_user_model):
    superuser = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    offered = {
        (label, action)
        for label in _registered_labels()
        for action in _actions_offered(superuser, label)
    }
    assert sorted(offered ^ set(ACTION_ACCESS)) == [], "actions without a rule, or gone"


def outcome(response) -> str:
    status = response.status_code
    if status in (301, 302) and "/login/" in response.get("Location", ""):
        return LOGIN
    if status == 403:
        return DENIED
    if status == 401:
        return UNAUTHORIZED
    if status >= 500 and status != 503:  # 503: /readyz without a worker, an answer
        return f"error {status}"
    return OK


def _answers(world: World, rule: Rule, key: str, client: Client) -> dict[str, str]:
    path = rule.path
    if callable(path):
        path = path(world)
    elif path is None:
        path = _sample_path(_routes()[key])
    answers = {}
    for visitor in VISITORS:
        # Each request as a visitor of its own: an empty cookie jar, then that visitor's login.
        # One client for them all: a new one loads the whole middleware chain again on its first
        # request (WhiteNoise indexes every static file), which was half of this test's time.
        client.cookies = SimpleCookie()
        if world.users[visitor] is not None:
            client.force_login(world.users[visitor])
        # Each visitor's request in its own rolled-back savepoint: what one does (approve,
        # discard) does not change what the next one finds.
        with transaction.atomic():
            response = getattr(client, rule.method)(path, rule.data)
            transaction.set_rollback(True)
        answers[visitor] = outcome(response)
    return answers


# CPU-bound (every URL for every visitor through the test client; about 30 s of CPU, more under
# coverage): on a machine at load 11 it took 300 s, the suite's default limit.
@pytest.mark.timeout(1200)
def test_each_url_answers_each_visitor_as_its_rule_says():
    # given one of everything, and a visitor of each kind
    world = world_make()

    # when each visitor asks for each URL
    client = Client(raise_request_exception=False)  # a 500 is an answer, and wrong
    answers = {key: _answers(world, rule, key, client) for key, rule in sorted(ALL_RULES.items())}

    # then each gets the answer its rule gives
    wrong = {
        key: {
            visitor: f"{answer}, expected {ALL_RULES[key].expected[visitor]}"
            for visitor, answer in by_visitor.items()
            if answer != ALL_RULES[key].expected[visitor]
        }
        for key, by_visitor in answers.items()
    }
    wrong = {key: diff for key, diff in wrong.items() if diff}
    assert not wrong, pformat(wrong)


def test_each_admin_action_is_offered_to_whom_its_rule_says():
    world = world_make()

    offered_to = {
        (label, action): tuple(
            visitor for visitor in STAFF if action in _actions_offered(world.users[visitor], label)
        )
        for label, action in ACTION_ACCESS
    }

    expected = {
        key: tuple(visitor for visitor in STAFF if visitor in who)
        for key, who in ACTION_ACCESS.items()
    }
    assert offered_to == expected
