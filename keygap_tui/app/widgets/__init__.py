"""One widget per module; the app composes them and owns the work they ask for."""
