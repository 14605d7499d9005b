"""Test harness for Breakwater's integration tests: a private Postfix, an SMTP sink,
the `breakwater run` daemon and a milter protocol client. Standard library only."""
