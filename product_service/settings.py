from __future__ import annotations

from pydantic import AliasChoices, Field

from common.config import CommonSettings


class ProductSettings(CommonSettings):
    service_name: str = "product_service"
    database_url: str = Field(
        default="sqlite:///var/product_service.db",
        validation_alias=AliasChoices("PRODUCT_DATABASE_URL", "database_url"),
    )
    # Released reservation lines outlive any late retry of their reservation by far after
    # this long; `prune-reservations` deletes them then.
    released_reservation_retention_hours: float = Field(default=168, gt=0)
