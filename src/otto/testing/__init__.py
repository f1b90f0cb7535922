"""Testing with otto: the pytest plugin, stability runs, transcripts and the run report."""
