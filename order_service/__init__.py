"""The order service: places, pays and cancels orders; relays their events to SQS."""
