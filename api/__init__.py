"""The FastAPI app, its routers and pages, and the `faqloop` CLI: the composition root."""
