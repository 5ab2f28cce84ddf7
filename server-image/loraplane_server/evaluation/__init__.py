"""The rating page: raters score two anonymous answers side by side, by a token link each."""
