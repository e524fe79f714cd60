"""The course_utils test suite (a package, so tests share helpers through tests.conftest)."""
