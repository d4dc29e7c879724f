from __future__ import annotations

from pydantic import AliasChoices, Field

from common.config import CommonSettings, database_password_alias
from order_service.heartbeat import DEFAULT_HEARTBEAT_FILE
from order_service.service import DEFAULT_MAX_PENDING_ORDERS, DEFAULT_PAYMENT_TIMEOUT_S


class OrderSettings(CommonSettings):
    service_name: str = "order_service"
    database_url: str = Field(
        default="sqlite:///var/order_service.db",
        validation_alias=AliasChoices("ORDER_DATABASE_URL", "database_url"),
    )
    database_password: str | None = Field(
        default=None, validation_alias=database_password_alias("ORDER")
    )
    user_service_url: str = "http://127.0.0.1:8082"
    product_service_url: str = "http://127.0.0.1:8081"
    # The account the order service calls the other services as.
    service_username: str | None = None
    service_password: str | None = None
    # Unset means real AWS SQS; boto3 reads region and credentials from its usual places.
    sqs_endpoint_url: str | None = None
    order_events_queue: str = "order-events"
    aws_default_region: str = "us-east-1"
    # A user that exists keeps existing (users are never deleted), so a positive answer is
    # safe to reuse for a while; a negative one is never cached.
    user_cache_seconds: float = Field(default=300, ge=0)
    # An attempt still in flight after this long lost its request (a crash, a kill): the
    # worker gives its reservation back. Far above any request's own timeouts.
    attempt_repair_after_s: float = Field(default=30, gt=0)
    # How long a PENDING order holds its stock unpaid (its expiresAt): at least a second (the
    # demo's and tests' short timeouts), at most 30 days (stock held longer is stock lost).
    order_payment_timeout_s: int = Field(default=DEFAULT_PAYMENT_TIMEOUT_S, ge=1, le=30 * 86400)
    # How often the worker cancels the PENDING orders whose expiresAt has passed: the lag from
    # expiresAt to the cancel is about this, plus a round's own time.
    order_expiry_interval_s: float = Field(default=0.5, ge=0.25, le=60)
    # The most unpaid orders (PENDING or being placed) one user may have; 0 turns the cap off.
    max_pending_orders: int = Field(default=DEFAULT_MAX_PENDING_ORDERS, ge=0, le=1_000_000)
    relay_batch_size: int = Field(default=10, ge=1, le=10)  # SendMessageBatch takes 10 at most
    relay_threads: int = Field(default=2, ge=1, le=16)
    relay_idle_poll_s: float = Field(default=0.1, gt=0)
    outbox_retention_hours: float = Field(default=168, gt=0)
    # An event SQS refuses (for what it is) this many times is parked, never claimed again.
    outbox_max_attempts: int = Field(default=10, ge=1)
    # A cancel begun this long ago and not finished (its release failed, or its process
    # died) is finished by the worker; a cancel in progress normally ends within a second.
    cancel_finish_after_s: float = Field(default=10, gt=0)
    # Failed attempts (nothing was placed; only their key remains) are deleted after this.
    failed_attempt_retention_hours: float = Field(default=168, gt=0)
    # The worker serves its Prometheus metrics on this port; 0 serves none.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # Touched by the worker while it relays; its liveness probe reads the same variable.
    worker_heartbeat_file: str = DEFAULT_HEARTBEAT_FILE
