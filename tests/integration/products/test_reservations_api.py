"""The reservation rows of the product section of the contract, against a real database."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.products.conftest import (
    ADMIN,
    CUSTOMER,
    SERVICE,
    UNKNOWN_ID,
    assert_problem,
)


def new_reservation_id() -> str:
    return str(uuid.uuid4())


def stock_of(client, product_id: str) -> int:
    return client.get(f"/api/v1/products/{product_id}").get_json()["stock"]


def reserve(client, product_id: str, reservation_id: str, quantity: int, headers=SERVICE):
    return client.post(
        f"/api/v1/products/{product_id}/reserve",
        json={"reservationId": reservation_id, "quantity": quantity},
        headers=headers,
    )


def release(client, product_id: str, reservation_id: str, headers=SERVICE):
    return client.post(
        f"/api/v1/products/{product_id}/release",
        json={"reservationId": reservation_id},
        headers=headers,
    )


def reserve_items(client, reservation_id: str, items: list[tuple[str, int]], headers=SERVICE):
    return client.post(
        "/api/v1/reservations",
        json={
            "reservationId": reservation_id,
            "items": [{"productId": p, "quantity": q} for p, q in items],
        },
        headers=headers,
    )


def reserve_batch(client, batch: list[tuple[str, list[tuple[str, int]]]], headers=SERVICE):
    return client.post(
        "/api/v1/reservations/batch",
        json={
            "reservations": [
                {"reservationId": rid, "items": [{"productId": p, "quantity": q} for p, q in items]}
                for rid, items in batch
            ]
        },
        headers=headers,
    )


def batch_results(response) -> list[tuple[int, dict]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [(result["status"], result["body"]) for result in response.get_json()["results"]]


def release_reservation(client, reservation_id: str, headers=SERVICE):
    return client.post(f"/api/v1/reservations/{reservation_id}/release", headers=headers)


class TestReserveOne:
    def test_reserving_takes_stock_and_answers_what_is_left(self, client, create_product):
        product = create_product(stock=10)["id"]
        rid = new_reservation_id()
        response = reserve(client, product, rid, 3)
        assert response.status_code == 200
        assert response.get_json() == {
            "productId": product,
            "reservationId": rid,
            "quantity": 3,
            "stock": 7,
        }
        assert stock_of(client, product) == 7

    def test_a_retry_is_answered_without_taking_stock_again(self, client, create_product):
        product = create_product(stock=10)["id"]
        rid = new_reservation_id()
        first = reserve(client, product, rid, 3).get_json()
        again = reserve(client, product, rid, 3)
        assert again.status_code == 200
        assert again.get_json() == first
        assert stock_of(client, product) == 7

    def test_the_same_id_with_another_quantity_is_409(self, client, create_product):
        product = create_product(stock=10)["id"]
        rid = new_reservation_id()
        reserve(client, product, rid, 3)
        assert assert_problem(reserve(client, product, rid, 4), 409)["quantity"] == 3
        assert stock_of(client, product) == 7

    def test_not_enough_stock_is_409_with_available(self, client, create_product):
        product = create_product(stock=2)["id"]
        body = assert_problem(reserve(client, product, new_reservation_id(), 3), 409)
        assert body["available"] == 2
        assert stock_of(client, product) == 2

    def test_exactly_the_stock_can_be_reserved_and_then_nothing(self, client, create_product):
        product = create_product(stock=2)["id"]
        assert reserve(client, product, new_reservation_id(), 2).get_json()["stock"] == 0
        assert (
            assert_problem(reserve(client, product, new_reservation_id(), 1), 409)["available"] == 0
        )

    def test_an_archived_product_has_nothing_to_reserve(self, client, create_product):
        product = create_product(stock=5)["id"]
        client.delete(f"/api/v1/products/{product}", headers=ADMIN)
        assert (
            assert_problem(reserve(client, product, new_reservation_id(), 1), 409)["available"] == 0
        )

    @pytest.mark.parametrize("product_id", [UNKNOWN_ID, "nope"])
    def test_unknown_product_is_404(self, client, product_id):
        assert_problem(reserve(client, product_id, new_reservation_id(), 1), 404)

    def test_a_failed_reserve_leaves_the_id_free(self, client, create_product):
        product = create_product(stock=2)["id"]
        rid = new_reservation_id()
        assert_problem(reserve(client, product, rid, 5), 409)
        assert reserve(client, product, rid, 2).status_code == 200

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"reservationId": "r"},
            {"quantity": 1},
            {"reservationId": "r", "quantity": 0},
            {"reservationId": "r", "quantity": -1},
            {"reservationId": "r", "quantity": "1"},
            {"reservationId": "r", "quantity": 1.5},
            {"reservationId": "r", "quantity": 1_000_001},
            {"reservationId": "", "quantity": 1},
            {"reservationId": "has space", "quantity": 1},
            {"reservationId": "r" * 65, "quantity": 1},
            {"reservationId": 7, "quantity": 1},
            {"reservationId": "r", "quantity": 1, "extra": True},
        ],
    )
    def test_invalid_bodies_are_422(self, client, create_product, payload):
        product = create_product()["id"]
        response = client.post(f"/api/v1/products/{product}/reserve", json=payload, headers=SERVICE)
        assert_problem(response, 422)

    def test_malformed_json_is_400_and_other_media_types_415(self, client, create_product):
        product = create_product()["id"]
        url = f"/api/v1/products/{product}/reserve"
        assert_problem(
            client.post(url, data="{", content_type="application/json", headers=SERVICE), 400
        )
        assert_problem(client.post(url, data="quantity=1", headers=SERVICE), 415)

    def test_admin_may_reserve_too(self, client, create_product):
        product = create_product()["id"]
        assert reserve(client, product, new_reservation_id(), 1, headers=ADMIN).status_code == 200

    @pytest.mark.parametrize(("headers", "status"), [({}, 401), (CUSTOMER, 403)])
    def test_customers_and_anonymous_may_not(self, client, create_product, headers, status):
        product = create_product(stock=5)["id"]
        assert_problem(reserve(client, product, new_reservation_id(), 1, headers=headers), status)
        assert stock_of(client, product) == 5


class TestReleaseOne:
    def test_release_gives_the_stock_back_exactly_once(self, client, create_product):
        product = create_product(stock=10)["id"]
        rid = new_reservation_id()
        reserve(client, product, rid, 4)
        first = release(client, product, rid)
        assert first.status_code == 200
        assert first.get_json() == {
            "productId": product,
            "reservationId": rid,
            "quantity": 4,
            "stock": 10,
        }
        assert release(client, product, rid).get_json()["stock"] == 10
        assert stock_of(client, product) == 10

    def test_a_released_reservation_cannot_be_reserved_again(self, client, create_product):
        product = create_product(stock=10)["id"]
        rid = new_reservation_id()
        reserve(client, product, rid, 4)
        release(client, product, rid)
        assert_problem(reserve(client, product, rid, 4), 409)
        assert stock_of(client, product) == 10

    def test_unknown_reservation_is_404(self, client, create_product):
        product = create_product()["id"]
        assert_problem(release(client, product, new_reservation_id()), 404)
        assert_problem(release(client, str(uuid.uuid4()), new_reservation_id()), 404)

    def test_stock_comes_back_to_an_archived_product(self, client, create_product):
        product = create_product(stock=3)["id"]
        rid = new_reservation_id()
        reserve(client, product, rid, 3)
        client.delete(f"/api/v1/products/{product}", headers=ADMIN)
        assert release(client, product, rid).get_json()["stock"] == 3

    @pytest.mark.parametrize("payload", [{}, {"reservationId": ""}, {"reservationId": 1}])
    def test_invalid_bodies_are_422(self, client, create_product, payload):
        product = create_product()["id"]
        response = client.post(f"/api/v1/products/{product}/release", json=payload, headers=SERVICE)
        assert_problem(response, 422)

    @pytest.mark.parametrize(("headers", "status"), [({}, 401), (CUSTOMER, 403)])
    def test_customers_and_anonymous_may_not(self, client, create_product, headers, status):
        product = create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve(client, product, rid, 2)
        assert_problem(release(client, product, rid, headers=headers), status)
        assert stock_of(client, product) == 3


class TestReserveMany:
    def test_all_items_are_held_in_one_go(self, client, create_product):
        a, b = create_product(stock=5)["id"], create_product(stock=5)["id"]
        rid = new_reservation_id()
        response = reserve_items(client, rid, [(b, 2), (a, 1)])
        assert response.status_code == 201
        body = response.get_json()
        assert body["reservationId"] == rid and body["state"] == "held"
        assert sorted((i["productId"], i["quantity"]) for i in body["items"]) == sorted(
            [(a, 1), (b, 2)]
        )
        assert (stock_of(client, a), stock_of(client, b)) == (4, 3)

    def test_one_short_item_means_nothing_is_reserved_and_every_short_item_is_named(
        self, client, create_product
    ):
        plenty, short, empty = (create_product(stock=s)["id"] for s in (10, 1, 0))
        response = reserve_items(
            client, new_reservation_id(), [(plenty, 2), (short, 2), (empty, 1)]
        )
        body = assert_problem(response, 409)
        assert sorted(body["items"], key=lambda i: i["available"]) == sorted(
            [
                {"productId": empty, "quantity": 1, "available": 0, "archived": False},
                {"productId": short, "quantity": 2, "available": 1, "archived": False},
            ],
            key=lambda i: i["available"],
        )
        assert [stock_of(client, p) for p in (plenty, short, empty)] == [10, 1, 0]

    def test_a_retry_is_answered_201_without_taking_stock_again(self, client, create_product):
        a, b = create_product(stock=5)["id"], create_product(stock=5)["id"]
        rid = new_reservation_id()
        first = reserve_items(client, rid, [(a, 1), (b, 2)])
        again = reserve_items(client, rid, [(b, 2), (a, 1)])
        assert again.status_code == 201
        assert again.get_json() == first.get_json()
        assert (stock_of(client, a), stock_of(client, b)) == (4, 3)

    def test_each_held_item_carries_the_price_and_name_it_was_held_at(self, client, create_product):
        a = create_product(stock=5, price="12.50", name="Lamp")["id"]
        free = create_product(stock=5, price="0", name="Sticker")["id"]
        body = reserve_items(client, new_reservation_id(), [(a, 2), (free, 1)]).get_json()
        assert {i["productId"]: (i["price"], i["name"]) for i in body["items"]} == {
            a: ("12.50", "Lamp"),
            free: ("0.00", "Sticker"),
        }

    def test_a_retry_answers_the_price_and_name_held_even_after_they_changed(
        self, client, create_product
    ):
        product = create_product(stock=5, price="12.50", name="Lamp")["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(product, 1)])
        client.patch(
            f"/api/v1/products/{product}",
            json={"price": "99.00", "name": "Desk lamp"},
            headers=ADMIN,
        )
        assert client.get(f"/api/v1/products/{product}").get_json()["price"] == "99.00"
        again = reserve_items(client, rid, [(product, 1)]).get_json()
        assert again["items"] == [
            {"productId": product, "quantity": 1, "price": "12.50", "name": "Lamp"}
        ]

    def test_the_same_id_with_other_items_is_409(self, client, create_product):
        a, b = create_product(stock=5)["id"], create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(a, 1)])
        assert_problem(reserve_items(client, rid, [(a, 1), (b, 1)]), 409)
        assert_problem(reserve_items(client, rid, [(a, 2)]), 409)
        assert (stock_of(client, a), stock_of(client, b)) == (4, 5)

    def test_an_archived_product_is_short_with_nothing_available(self, client, create_product):
        product = create_product(stock=5)["id"]
        client.delete(f"/api/v1/products/{product}", headers=ADMIN)
        body = assert_problem(reserve_items(client, new_reservation_id(), [(product, 1)]), 409)
        assert body["items"] == [
            {"productId": product, "quantity": 1, "available": 0, "archived": True}
        ]

    def test_an_unknown_product_is_422_naming_the_item(self, client, create_product):
        known = create_product(stock=5)["id"]
        response = reserve_items(client, new_reservation_id(), [(known, 1), (str(uuid.uuid4()), 1)])
        assert assert_problem(response, 422)["errors"] == [
            {"field": "items.1.productId", "message": "no such product"}
        ]
        assert stock_of(client, known) == 5

    @pytest.mark.parametrize(
        "items",
        [
            [],
            [{"productId": "x" * 36}],
            [{"productId": "x" * 36, "quantity": 0}],
            [{"productId": "short", "quantity": 1}],
            [{"productId": "x" * 36, "quantity": 1, "price": "1.00"}],
            [{"productId": "x" * 36, "quantity": 1}, {"productId": "x" * 36, "quantity": 2}],
            [{"productId": f"{UNKNOWN_ID[:-3]}{i:03d}", "quantity": 1} for i in range(101)],
            "not a list",
        ],
    )
    def test_invalid_items_are_422(self, client, items):
        response = client.post(
            "/api/v1/reservations", json={"reservationId": "r-1", "items": items}, headers=SERVICE
        )
        assert_problem(response, 422)

    def test_malformed_json_is_400_and_oversized_is_413(self, client):
        assert_problem(
            client.post(
                "/api/v1/reservations", data="{", content_type="application/json", headers=SERVICE
            ),
            400,
        )
        big = '{"reservationId": "r", "items": [], "pad": "' + "x" * 70_000 + '"}'
        assert_problem(
            client.post(
                "/api/v1/reservations", data=big, content_type="application/json", headers=SERVICE
            ),
            413,
        )

    @pytest.mark.parametrize(("headers", "status"), [({}, 401), (CUSTOMER, 403)])
    def test_customers_and_anonymous_may_not(self, client, create_product, headers, status):
        product = create_product(stock=5)["id"]
        assert_problem(reserve_items(client, new_reservation_id(), [(product, 1)], headers), status)
        assert stock_of(client, product) == 5


class TestReserveBatch:
    """Each reservation of a batch is answered exactly as its own request would be."""

    def test_every_reservation_that_fits_is_held_with_its_prices(self, client, create_product):
        a = create_product(stock=10, price="2.50", name="Apple")["id"]
        b = create_product(stock=10, price="7.00", name="Bread")["id"]
        first, second, third = (new_reservation_id() for _ in range(3))
        results = batch_results(
            reserve_batch(
                client, [(first, [(b, 2), (a, 1)]), (second, [(a, 3)]), (third, [(b, 1)])]
            )
        )
        assert [status for status, _ in results] == [201, 201, 201]
        assert [body["reservationId"] for _, body in results] == [first, second, third]
        assert results[0][1] == {
            "reservationId": first,
            "state": "held",
            "items": [
                {"productId": p, "quantity": q, "price": price, "name": name}
                for p, q, price, name in sorted([(a, 1, "2.50", "Apple"), (b, 2, "7.00", "Bread")])
            ],
        }
        assert (stock_of(client, a), stock_of(client, b)) == (6, 7)
        # Each is an ordinary reservation: a retry alone is answered, a release gives it back.
        assert reserve_items(client, second, [(a, 3)]).get_json() == results[1][1]
        release_reservation(client, first)
        assert (stock_of(client, a), stock_of(client, b)) == (7, 9)

    def test_stock_goes_in_request_order_and_a_short_one_holds_nothing(
        self, client, create_product
    ):
        scarce, plenty = create_product(stock=3)["id"], create_product(stock=10)["id"]
        early, late, after = (new_reservation_id() for _ in range(3))
        results = batch_results(
            reserve_batch(
                client,
                [
                    (early, [(scarce, 2)]),
                    (late, [(plenty, 1), (scarce, 2)]),
                    (after, [(scarce, 1)]),
                ],
            )
        )
        assert [status for status, _ in results] == [201, 409, 201]
        # Refused after the batch took what fitted, so it sees the stock as it is then.
        assert results[1][1]["items"] == [
            {"productId": scarce, "quantity": 2, "available": 0, "archived": False}
        ]
        assert (stock_of(client, scarce), stock_of(client, plenty)) == (0, 10)
        # The refused id stays free, as after a refused request of its own.
        assert reserve_items(client, late, [(plenty, 1)]).status_code == 201

    def test_unknown_and_archived_products_are_refused_as_alone(self, client, create_product):
        known, archived = create_product(stock=5)["id"], create_product(stock=5)["id"]
        client.delete(f"/api/v1/products/{archived}", headers=ADMIN)
        results = batch_results(
            reserve_batch(
                client,
                [
                    (new_reservation_id(), [(known, 1), (UNKNOWN_ID, 1)]),
                    (new_reservation_id(), [(archived, 1)]),
                    (new_reservation_id(), [(known, 2)]),
                ],
            )
        )
        assert [status for status, _ in results] == [422, 409, 201]
        assert results[0][1]["errors"] == [
            {"field": "items.1.productId", "message": "no such product"}
        ]
        assert results[1][1]["items"][0]["archived"] is True
        assert stock_of(client, known) == 3

    def test_a_retried_or_released_reservation_in_a_batch_takes_nothing_again(
        self, client, create_product
    ):
        product = create_product(stock=10)["id"]
        held, released, fresh = (new_reservation_id() for _ in range(3))
        first_answer = reserve_items(client, held, [(product, 2)]).get_json()
        release_reservation(client, released)
        results = batch_results(
            reserve_batch(
                client,
                [(held, [(product, 2)]), (released, [(product, 1)]), (fresh, [(product, 3)])],
            )
        )
        assert [status for status, _ in results] == [201, 409, 201]
        assert results[0][1] == first_answer
        assert stock_of(client, product) == 5

    @pytest.mark.parametrize(
        "reservations",
        [
            [],
            [{"reservationId": "same", "items": [{"productId": UNKNOWN_ID, "quantity": 1}]}] * 2,
            [
                {"reservationId": f"r-{n}", "items": [{"productId": UNKNOWN_ID, "quantity": 1}]}
                for n in range(65)
            ],
            [
                {
                    "reservationId": f"r-{n}",
                    "items": [
                        {"productId": f"{UNKNOWN_ID[:-3]}{i:03d}", "quantity": 1} for i in range(51)
                    ],
                }
                for n in range(2)
            ],
            [{"reservationId": "r-1", "items": []}],
            "not a list",
        ],
    )
    def test_invalid_batches_are_422_and_reserve_nothing(self, client, reservations):
        response = client.post(
            "/api/v1/reservations/batch", json={"reservations": reservations}, headers=SERVICE
        )
        assert_problem(response, 422)

    @pytest.mark.parametrize(("headers", "status"), [({}, 401), (CUSTOMER, 403)])
    def test_customers_and_anonymous_may_not(self, client, create_product, headers, status):
        product = create_product(stock=5)["id"]
        response = reserve_batch(client, [(new_reservation_id(), [(product, 1)])], headers)
        assert_problem(response, status)
        assert stock_of(client, product) == 5


class TestReleaseMany:
    def test_release_gives_everything_back_exactly_once(self, client, create_product):
        a, b = create_product(stock=5)["id"], create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(a, 2), (b, 3)])
        first = release_reservation(client, rid)
        assert first.status_code == 200
        assert first.get_json()["state"] == "released"
        assert sorted((i["productId"], i["quantity"]) for i in first.get_json()["items"]) == sorted(
            [(a, 2), (b, 3)]
        )
        again = release_reservation(client, rid)
        assert again.status_code == 200
        assert again.get_json() == first.get_json()
        assert (stock_of(client, a), stock_of(client, b)) == (5, 5)

    def test_a_released_reservation_is_not_taken_again_by_a_late_retry(
        self, client, create_product
    ):
        product = create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(product, 2)])
        release_reservation(client, rid)
        assert_problem(reserve_items(client, rid, [(product, 2)]), 409)
        assert stock_of(client, product) == 5

    def test_releasing_an_unknown_reservation_is_remembered(self, client, create_product):
        """The caller may not know whether its reserve arrived; a reserve arriving after the
        release must not hold stock that nobody will give back."""
        product = create_product(stock=5)["id"]
        rid = new_reservation_id()
        response = release_reservation(client, rid)
        assert response.status_code == 200
        assert response.get_json() == {"reservationId": rid, "state": "released", "items": []}
        assert_problem(reserve_items(client, rid, [(product, 1)]), 409)
        assert stock_of(client, product) == 5

    def test_it_releases_reservations_made_item_by_item(self, client, create_product):
        a, b = create_product(stock=5)["id"], create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve(client, a, rid, 1)
        reserve(client, b, rid, 2)
        release_reservation(client, rid)
        assert (stock_of(client, a), stock_of(client, b)) == (5, 5)

    @pytest.mark.parametrize("reservation_id", ["has%20space", "x" * 65])
    def test_an_impossible_reservation_id_is_404(self, client, reservation_id):
        assert_problem(release_reservation(client, reservation_id), 404)

    @pytest.mark.parametrize(("headers", "status"), [({}, 401), (CUSTOMER, 403)])
    def test_customers_and_anonymous_may_not(self, client, create_product, headers, status):
        product = create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(product, 1)])
        assert_problem(release_reservation(client, rid, headers), status)
        assert stock_of(client, product) == 4


def release_batch(client, reservation_ids: list[str], headers=SERVICE):
    return client.post(
        "/api/v1/reservations/release", json={"reservationIds": reservation_ids}, headers=headers
    )


class TestReleaseBatch:
    def test_each_is_answered_as_its_own_release_and_the_stock_comes_back_once(
        self, client, create_product
    ):
        a, b = create_product(stock=10)["id"], create_product(stock=10)["id"]
        both, only_a, by_item = (new_reservation_id() for _ in range(3))
        reserve_items(client, both, [(a, 2), (b, 3)])
        reserve_batch(client, [(only_a, [(a, 1)])])
        reserve(client, b, by_item, 4)
        never = new_reservation_id()
        ids = [both, never, only_a, by_item]

        response = release_batch(client, ids)

        assert response.status_code == 200
        results = response.get_json()["results"]
        assert [r["reservationId"] for r in results] == ids
        assert {r["state"] for r in results} == {"released"}
        for rid, result in zip(ids, results, strict=True):
            alone = release_reservation(client, rid)  # now a repeat: the same answer, no stock
            assert alone.get_json() == result
        assert (stock_of(client, a), stock_of(client, b)) == (10, 10)
        assert release_batch(client, ids).get_json()["results"] == results
        assert (stock_of(client, a), stock_of(client, b)) == (10, 10)

    def test_an_id_that_held_nothing_is_remembered(self, client, create_product):
        product = create_product(stock=5)["id"]
        held, never = new_reservation_id(), new_reservation_id()
        reserve_items(client, held, [(product, 2)])
        release_batch(client, [held, never])
        assert_problem(reserve_items(client, never, [(product, 1)]), 409)
        assert_problem(reserve_items(client, held, [(product, 2)]), 409)
        assert stock_of(client, product) == 5

    def test_many_products_over_the_statement_bound_all_come_back(self, client, create_product):
        products = [create_product(stock=3)["id"] for _ in range(120)]
        ids = []
        for start in range(0, 120, 60):
            rid = new_reservation_id()
            reserve_items(client, rid, [(p, 1) for p in products[start : start + 60]])
            ids.append(rid)
        assert release_batch(client, ids).status_code == 200
        assert {stock_of(client, p) for p in products} == {3}

    @pytest.mark.parametrize(
        "reservation_ids",
        [[], ["same", "same"], ["has space"], ["x" * 65], [f"r{n}" for n in range(201)]],
    )
    def test_invalid_batches_are_422_and_release_nothing(
        self, client, create_product, reservation_ids
    ):
        product = create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(product, 1)])
        # The valid id of a held reservation goes in each invalid batch (but the empty one).
        batch = [rid, *reservation_ids] if reservation_ids else []
        assert_problem(release_batch(client, batch), 422)
        assert stock_of(client, product) == 4

    @pytest.mark.parametrize(("headers", "status"), [({}, 401), (CUSTOMER, 403)])
    def test_customers_and_anonymous_may_not(self, client, create_product, headers, status):
        product = create_product(stock=5)["id"]
        rid = new_reservation_id()
        reserve_items(client, rid, [(product, 1)])
        assert_problem(release_batch(client, [rid], headers), status)
        assert stock_of(client, product) == 4
