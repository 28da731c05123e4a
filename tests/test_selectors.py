import pytest

from autoscene.selectors import InvalidSelectorError, selects

LABELS = {"site": "lab", "robot": "r2"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, True),
        ({}, True),
        ({"matchLabels": {"site": "lab"}}, True),
        ({"matchLabels": {"site": "field"}}, False),
        ({"matchExpressions": [{"key": "robot", "operator": "In", "values": ["r1", "r2"]}]}, True),
        ({"matchExpressions": [{"key": "robot", "operator": "NotIn", "values": ["r2"]}]}, False),
        ({"matchExpressions": [{"key": "camera", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "site", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "site", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"site": "lab"},
                "matchExpressions": [{"key": "robot", "operator": "In", "values": ["r9"]}],
            },
            False,
        ),
    ],
)
def test_label_selectors(selector: dict | None, expected: bool) -> None:
    assert selects(selector, LABELS) is expected


def test_bad_selectors_are_refused() -> None:
    with pytest.raises(InvalidSelectorError):
        selects({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, LABELS)
    with pytest.raises(InvalidSelectorError):
        selects({"matchExpressions": [{"key": "a", "operator": "Near"}]}, LABELS)
