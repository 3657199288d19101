"""Labels: the DR grading scale, what a set's classes mean, the label files of every DR set, ids and splits."""
