"""course_utils: the tested, reusable code of the Zeiler & Fergus course."""

__version__ = "0.1.0"
