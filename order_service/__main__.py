from order_service.cli import cli

cli()
