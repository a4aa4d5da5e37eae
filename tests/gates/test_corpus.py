from awqguard.gates.corpus import slugify, split_sections

DOC = """# Ops guide

Intro text.

## Rotating keys (v2)

Rotate every 90 days.

### Grace period

24 hours.

## Revoking keys

Immediate.

```
## not a heading inside a fence
```

## Rotating keys (v2)

Duplicate heading.
"""


def test_slug_rule():
    assert slugify("Rotating keys (v2)") == "rotating-keys-v2"
    assert slugify("  --Hello,   World!!  ") == "hello-world"
    assert slugify("SLA: 99.9%") == "sla-99-9"


def test_sections_ids_spans_and_duplicates():
    secs = split_sections("ops", DOC)
    assert [s.id for s in secs] == ["ops#ops-guide", "ops#rotating-keys-v2", "ops#grace-period",
                                    "ops#revoking-keys", "ops#rotating-keys-v2-2"]
    by_id = {s.id: s for s in secs}
    rotating = DOC[by_id["ops#rotating-keys-v2"].start:by_id["ops#rotating-keys-v2"].end]
    assert "Rotate every 90 days" in rotating and "24 hours" in rotating and "Immediate" not in rotating
    grace = DOC[by_id["ops#grace-period"].start:by_id["ops#grace-period"].end]
    assert grace.startswith("### Grace period") and "Revoking" not in grace
    revoking = DOC[by_id["ops#revoking-keys"].start:by_id["ops#revoking-keys"].end]
    assert "not a heading inside a fence" in revoking
    title = by_id["ops#ops-guide"]
    assert (title.start, title.end) == (0, len(DOC))
