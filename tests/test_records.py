from typing import Any

from autoscene.records import claim_body, claim_of


def record(**storage: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Record",
        "metadata": {"name": "drives", "namespace": "lab", "uid": "uid-9"},
        "spec": {"storage": storage},
    }


def test_the_claim_is_owned_by_its_record_and_sized_by_it() -> None:
    claim = claim_body(record(size="20Gi", storageClassName="nfs"))
    assert claim["metadata"]["name"] == "record-drives" and claim["metadata"]["namespace"] == "lab"
    [owner] = claim["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-9" and owner["kind"] == "Record" and owner["controller"] is True
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "nfs",
    }


def test_single_node_clusters_can_ask_for_read_write_once() -> None:
    claim = claim_body(record(size="1Gi", accessMode="ReadWriteOnce"))
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim["spec"]


def test_a_records_claim_is_the_named_one_or_the_created_one() -> None:
    assert claim_of(record(claimName="existing")) == "existing"
    assert claim_of(record(size="1Gi")) is None
    assert claim_of({**record(size="1Gi"), "status": {"claimName": "record-drives"}}) == "record-drives"
