"""Candidate new characters: the images a run rejects as unknown, clustered beside the characters it knows."""
