"""Who may call the API: key roles checked per request, and the key commands."""
