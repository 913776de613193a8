"""The per-layer time summary files each test under the tests/ folder it lives in."""

from tests.layer_timing import layer_of


def test_a_test_belongs_to_the_folder_under_tests() -> None:
    # GIVEN test ids as pytest reports them, WHEN their layer is asked, THEN it is the folder
    assert layer_of("tests/unit/test_router.py::test_sync") == "unit"
    assert layer_of("tests/e2e/test_requests.py::TestX::test_y[param::1]") == "e2e"


def test_a_test_outside_a_layer_folder_is_other() -> None:
    assert layer_of("tests/test_top.py::test_x") == "other"
    assert layer_of("elsewhere/test_x.py::test_y") == "other"
