"""Running Shop on one machine without Docker: the local SQS endpoint and the process supervisor."""
