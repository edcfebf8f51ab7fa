import pytest

# The saga harness asserts in a helper module; have pytest explain those failures as it does in tests.
pytest.register_assert_rewrite("tests.unit.sagas.saga_harness")
