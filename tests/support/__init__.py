"""Helpers shared by the tests: tiny random models, a fake ERV classifier, an in-process reward service, metric-name readers."""
