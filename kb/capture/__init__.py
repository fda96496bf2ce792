"""Knowledge capture: resolved threads become evidence, phrasings and drafts."""
