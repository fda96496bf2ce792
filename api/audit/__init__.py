"""The audit trail over HTTP: GET /v1/audit (admins) and the page /review/audit."""
