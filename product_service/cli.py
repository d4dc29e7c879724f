"""`python -m product_service ...`: migrations from the command line."""

from __future__ import annotations

from common.cli import service_cli
from product_service.app import MIGRATIONS_DIR
from product_service.settings import ProductSettings

cli = service_cli("product_service", lambda: ProductSettings().database_url, MIGRATIONS_DIR)
