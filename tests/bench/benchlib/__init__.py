"""The parts of tests/bench/run: the ground, the figures, the progress figure, the table."""
