"""Sinks: where rows go. BigQuery changelog and mirror writers, and the dead letters."""
