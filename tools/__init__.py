"""Developer tools: the environment lock, drift check, GPU environments, test-environment fixes."""
