"""Training, inference, evaluation and progress reporting."""
