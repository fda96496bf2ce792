"""The `faqloop` command line: one root app; features register their commands."""
