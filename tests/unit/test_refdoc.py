from greenmodel.api import refdoc


def test_reference_is_current():
    assert refdoc.OUT.read_text() == refdoc.render(), "docs/reference.md is stale: run `make crds`"


def test_reference_lists_nested_fields_defaults_and_rules():
    text = refdoc.render()
    assert "| `spec.hysteresis.minDwellSeconds` | integer |" in text
    assert "`minReplicas` must be less than or equal to `maxReplicas`" in text
    assert "### status" in text and "`status.observedGeneration`" in text
