"""The event schema of docs/ingest.md, as pydantic models.

The workers validate every event with `event_validate`; the OpenAPI document of
`POST /api/ingest/events` is generated from the same models.
"""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from core.limits import MAX_QTY

# MAX_QTY keeps sums far from the 64-bit columns of the ledger.
EVENTS_PER_REQUEST = 10_000


def _not_a_boolean(value: object) -> object:
    # JSON true/false would otherwise pass as 1/0.
    if isinstance(value, bool):
        raise ValueError("Input should be an integer, not a boolean")
    return value


# Integers are written `Annotated[int, Field(<bounds>), NOT_A_BOOLEAN]`, bounds first:
# pydantic-core then checks them inside its integer validator. Bounds added to an
# `Annotated[int, BeforeValidator(...)]` alias became two Python calls per value (and the JSON
# schema said `gt`/`le` instead of `exclusiveMinimum`/`maximum`); the messages are the same.
NOT_A_BOOLEAN = BeforeValidator(_not_a_boolean)
Code = Annotated[str, Field(min_length=1, max_length=64)]
Identifier = Annotated[str, Field(min_length=1, max_length=200)]
Quantity = Annotated[int, Field(gt=0, le=MAX_QTY), NOT_A_BOOLEAN]


class EventBase(BaseModel):
    # Extra fields are ignored: producers may carry their own metadata.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: Identifier = Field(description="Unique per source: the idempotency key.")
    occurred_at: AwareDatetime = Field(description="ISO 8601 with a UTC offset.")
    site: Code = Field(description="Site code.")


class Line(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    sku: Code
    qty: Quantity


Lines = Annotated[list[Line], Field(min_length=1, max_length=1000)]


class OrderCreated(EventBase):
    type: Literal["order.created"]
    order_id: Identifier
    lines: Lines
    channel: Annotated[str, Field(max_length=100)] = Field(
        default="", description="web, marketplace, store, or other text"
    )


class OrderDispatched(EventBase):
    type: Literal["order.dispatched"]
    order_id: Identifier
    courier_id: Identifier


class OrderDelivered(EventBase):
    type: Literal["order.delivered"]
    order_id: Identifier
    courier_id: Identifier
    shipping_cost: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4)]
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = Field(
        default=None, description="If given, must be the deployment currency."
    )
    accurate: bool
    issues: Annotated[list[Annotated[str, Field(max_length=500)]], Field(max_length=50)] = []


class OrderCancelled(EventBase):
    type: Literal["order.cancelled"]
    order_id: Identifier


class OrderReturned(EventBase):
    type: Literal["order.returned"]
    order_id: Identifier
    lines: Lines


class StockReceived(EventBase):
    type: Literal["stock.received"]
    sku: Code
    qty: Quantity
    reference: Annotated[str, Field(max_length=200)] = ""


class StockTransferred(EventBase):
    type: Literal["stock.transferred"]
    sku: Code
    qty: Quantity
    to_site: Code


class StockAdjusted(EventBase):
    type: Literal["stock.adjusted"]
    sku: Code
    qty_delta: Annotated[int, Field(ge=-MAX_QTY, le=MAX_QTY), NOT_A_BOOLEAN]
    reason: Annotated[str, Field(min_length=1, max_length=200)]

    @field_validator("qty_delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("qty_delta must not be zero")
        return value


class StockCounted(EventBase):
    type: Literal["stock.counted"]
    sku: Code
    counted_qty: Annotated[int, Field(ge=0, le=MAX_QTY), NOT_A_BOOLEAN]


class SnapshotLine(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    sku: Code
    # An on-hand view: zero is a real answer (quantities are "> 0 unless said otherwise").
    qty: Annotated[int, Field(ge=0, le=MAX_QTY), NOT_A_BOOLEAN]


class StockSnapshot(EventBase):
    type: Literal["stock.snapshot"]
    lines: Annotated[list[SnapshotLine], Field(min_length=1, max_length=EVENTS_PER_REQUEST)]


Event = Annotated[
    OrderCreated
    | OrderDispatched
    | OrderDelivered
    | OrderCancelled
    | OrderReturned
    | StockReceived
    | StockTransferred
    | StockAdjusted
    | StockCounted
    | StockSnapshot,
    Field(discriminator="type"),
]
ORDER_EVENT_TYPES = frozenset(
    {"order.created", "order.dispatched", "order.delivered", "order.cancelled", "order.returned"}
)
STOCK_EVENT_TYPES = frozenset(
    {"stock.received", "stock.transferred", "stock.adjusted", "stock.counted", "stock.snapshot"}
)
EVENT_TYPES = ORDER_EVENT_TYPES | STOCK_EVENT_TYPES

_event_adapter = TypeAdapter(Event)
# pydantic-core's validator itself: the TypeAdapter method around it checks its arguments on
# every call, and the workers call it once per event.
_event_validator = _event_adapter.validator


class EventBatch(BaseModel):
    """The `application/json` body of `POST /api/ingest/events`."""

    events: Annotated[list[Event], Field(min_length=1, max_length=EVENTS_PER_REQUEST)]


def event_validate(raw: object) -> Event:
    """Return the typed event, or raise ValidationError."""
    return _event_validator.validate_python(raw)


def validation_reason(error: ValidationError) -> str:
    """One line naming each bad field: 'lines.0.qty: Input should be greater than 0'."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        location = item["loc"]
        # The discriminator's tag ('order.created') is not a field the producer wrote.
        if len(location) > 1 and location[0] in EVENT_TYPES:
            location = location[1:]
        # An empty location is the discriminator itself: a missing or unknown `type`.
        field = ".".join(str(part) for part in location) or "type"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


# --- API answers ---------------------------------------------------------------------------


class BatchAccepted(BaseModel):
    batch_id: str
    accepted: int


class ApiError(BaseModel):
    detail: str = Field(description="What is wrong and how to fix it.")
    errors: list[str] = Field(default=[], description="Each problem found, when there are several.")


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the batch, from 0.")
    event_id: str
    reason: str
    status: str = Field(description="open, replayed or discarded (dead-letter status).")


class BatchReport(BaseModel):
    batch_id: str
    source: str
    status: Literal["queued", "processing", "done"]
    received_at: str
    finished_at: str | None
    accepted: int
    applied: int
    duplicates: int
    rejected: int
    pending: int = Field(description="Held order events, or events not processed yet.")
    rejections: list[Rejection]


class SourceTotals(BaseModel):
    source: str
    accepted: int
    applied: int
    duplicates: int
    rejected: int
    pending: int


def event_json_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with every `$ref` inlined (for an OpenAPI request body)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            # The mapping points into $defs, which are inlined away; the property name is enough.
            return {
                key: {"propertyName": value["propertyName"]}
                if key == "discriminator"
                else inline(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)
