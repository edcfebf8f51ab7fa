"""The saga table the README and the architecture page show is the real definition, not a sketch of it."""
import re

import pytest

from tests.support.cluster import ROOT


@pytest.mark.parametrize("page", ["README.md", "docs/architecture.md"])
def test_the_docs_show_the_place_order_definition_as_it_is(page):
    text = (ROOT / page).read_text()
    definition = (ROOT / "sagas" / "definitions" / "place_order.py").read_text()
    shown = re.search(r"The saga is a table \(`sagas/definitions/place_order.py`\):\n\n```python\n(.*?)```",
                      text, re.S)

    assert shown, f"{page} lost its saga table"
    assert shown.group(1).strip() == definition[definition.index("PROVIDER = "):].strip()
