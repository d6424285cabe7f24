"""Developer scripts: a local Label Studio harness (tests, demo) and the demo itself."""
