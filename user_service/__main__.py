from user_service.cli import cli

cli()
