"""The one grading path (photo bytes -> grade + warnings) and what uses it: predict, the learned gradability score."""
