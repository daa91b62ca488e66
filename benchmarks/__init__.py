"""taskkit's benchmarks: taskkit against the tools a user would pick instead, in one run."""
