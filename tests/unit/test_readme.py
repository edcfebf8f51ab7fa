"""The README's saga table is the real definition, not a sketch of it."""
import re

from tests.support.cluster import ROOT


def test_the_readme_shows_the_place_order_definition_as_it_is():
    readme = (ROOT / "README.md").read_text()
    definition = (ROOT / "sagas" / "definitions" / "place_order.py").read_text()
    shown = re.search(r"The saga is a table \(`sagas/definitions/place_order.py`\):\n\n```python\n(.*?)```",
                      readme, re.S)

    assert shown, "the README lost its saga table"
    assert shown.group(1).strip() == definition[definition.index("PROVIDER = "):].strip()
