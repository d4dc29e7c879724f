from common.migrations import run_migrations_online

run_migrations_online(lock_name="shop_order_service_migrations")
