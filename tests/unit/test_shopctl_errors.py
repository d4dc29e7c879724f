"""The outside world's failures, each turned into one line for the person at the terminal."""

from __future__ import annotations

import requests
import sqlalchemy.exc
from botocore.exceptions import ClientError, EndpointConnectionError

from shopctl.errors import ShopctlError, Unreachable, explain


def test_an_sqs_endpoint_that_does_not_answer_is_named_by_its_origin():
    error = explain(EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/queue/x"))
    assert isinstance(error, Unreachable)
    assert error.exit_code == 2
    assert error.message == "cannot reach SQS at http://127.0.0.1:4566 (is `make run` running?)"


def test_a_missing_queue_says_so():
    missing = ClientError(
        {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "no queue"}},
        "GetQueueUrl",
    )
    error = explain(missing, sqs_endpoint="http://127.0.0.1:4566")
    assert error is not None
    assert error.message == "SQS at http://127.0.0.1:4566: queue not found (no queue)"


def test_a_service_that_does_not_answer_is_named_by_its_origin():
    request = requests.Request("GET", "http://127.0.0.1:8080/api/v1/orders?limit=1").prepare()
    error = explain(requests.ConnectionError("refused", request=request))
    assert isinstance(error, Unreachable)
    assert error.message == "cannot reach http://127.0.0.1:8080 (is `make run` running?)"


def test_a_database_error_keeps_only_its_first_line():
    failure = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("no route\nmore"))
    error = explain(failure)
    assert error is not None
    assert error.message == "database error: no route"


def test_our_own_errors_pass_through_and_bugs_are_not_explained_away():
    mine = ShopctlError("nope")
    assert explain(mine) is mine
    assert explain(ZeroDivisionError()) is None
