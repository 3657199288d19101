"""Metrics (QWK, referable DR, quality classes), Kaggle's leaderboard score, training charts."""
