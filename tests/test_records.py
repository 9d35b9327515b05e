"""Decoding and checking `iris` records (SPEC, "Records")."""

from __future__ import annotations

import pytest

from iris_app.models import MAX_RECORD_BYTES, InvalidCounts, InvalidRecord, count_rows, parse_iris

VALID = b'{"sepalLength":6.7,"sepalWidth":3.3,"petalLength":5.7,"petalWidth":2.5,"species":"virginica"}'


def test_a_valid_record_keeps_exactly_its_spec_keys():
    raw = (
        b'{"sepalLength":6.7,"extra":[1],"sepalWidth":3,"petalLength":5.7,"petalWidth":0,"species":"setosa"}'
    )
    assert parse_iris(raw) == {
        "sepalLength": 6.7,
        "sepalWidth": 3,
        "petalLength": 5.7,
        "petalWidth": 0,
        "species": "setosa",
    }


def test_the_true_species_is_optional():
    record = parse_iris(b'{"sepalLength":6.7,"sepalWidth":3.3,"petalLength":5.7,"petalWidth":2.5}')
    assert "species" not in record
    assert "species" not in parse_iris(VALID.replace(b'"virginica"', b"null"))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (None, "empty message"),
        (b"", "empty message"),
        (b"{not json", "not JSON: "),
        (b"NaN", "not JSON: "),
        (b'{"sepalLength":1e400}', "not JSON: number is infinity"),
        (b"[6.7, 3.3, 5.7, 2.5]", "not a JSON object but list"),
        (b'"virginica"', "not a JSON object but str"),
        (VALID.replace(b'"petalWidth":2.5,', b""), "petalWidth: missing"),
        (VALID.replace(b"6.7", b'"6.7"'), 'sepalLength: not a number: "6.7"'),
        (VALID.replace(b"3.3", b"true"), "sepalWidth: not a number: true"),
        (VALID.replace(b"5.7", b"null"), "petalLength: not a number: null"),
        (VALID.replace(b"2.5", b"-0.1"), "petalWidth: negative: -0.1"),
        (
            VALID.replace(b"virginica", b"Iris-virginica"),
            'species: unknown "Iris-virginica", expected one of',
        ),
        (VALID.replace(b'"virginica"', b"3"), "species: unknown 3"),
        (VALID[:-1] + b',"pad":"' + b"x" * MAX_RECORD_BYTES + b'"}', "message too large: "),
    ],
)
def test_each_kind_of_bad_record_gets_its_own_reason(raw, error):
    with pytest.raises(InvalidRecord) as caught:
        parse_iris(raw)
    assert str(caught.value).startswith(error)


def test_non_finite_numbers_cannot_reach_the_model():
    # JSON has no NaN or Infinity, and orjson refuses overflowing numbers; -0.0 is a fine zero.
    assert parse_iris(VALID.replace(b"2.5", b"-0.0"))["petalWidth"] == 0


def count_row(**fields) -> dict:
    return {
        "species": "setosa",
        "predictedSpecies": "setosa",
        "startMs": 0,
        "endMs": 60_000,
        "count": 3,
    } | fields


def test_count_rows_from_another_worker_are_taken_only_when_they_are_exactly_count_rows():
    good = [count_row(), count_row(startMs=60_000, endMs=120_000)]
    assert count_rows(good, "setosa", "setosa", 60_000) == good
    for bad in (
        {"not": "a list"},
        [count_row(count="<img src=x>")],
        [count_row(species="virginica")],  # another key than asked for
        [count_row(endMs=1)],
        [count_row(count=-1)],
        [{**count_row(), "extra": 1}],
        ["a string"],
    ):
        with pytest.raises(InvalidCounts):
            count_rows(bad, "setosa", "setosa", 60_000)
