"""The product service: the catalog, its search, and stock reservations that never oversell."""
