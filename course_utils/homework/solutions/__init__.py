"""Solution sources of the homework, one module per assignment (see course_utils.homework.generate).

Only instructors' commands import these (``generate``, ``references``, ``grade --solution``);
grading a student's file never does, so a copy of ``course_utils`` for students may leave this
folder out.
"""
