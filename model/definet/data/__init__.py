"""Dataset reading, defect markers and periodic graphs."""
