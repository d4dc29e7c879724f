from product_service.cli import cli

cli()
