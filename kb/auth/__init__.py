"""Who may call the API: keys and their roles."""
