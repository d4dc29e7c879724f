from __future__ import annotations

from pydantic import AliasChoices, Field

from common.config import CommonSettings, database_password_alias


class ProductSettings(CommonSettings):
    service_name: str = "product_service"
    database_url: str = Field(
        default="sqlite:///var/product_service.db",
        validation_alias=AliasChoices("PRODUCT_DATABASE_URL", "database_url"),
    )
    database_password: str | None = Field(
        default=None, validation_alias=database_password_alias("PRODUCT")
    )
    # Released reservation lines outlive any late retry of their reservation by far after
    # this long; `prune-reservations` deletes them then.
    released_reservation_retention_hours: float = Field(default=168, gt=0)
