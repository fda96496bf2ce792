"""Knowledge capture: threads, files and drafts."""
