"""The scopes a bearer token of the HTTP API may carry (specs/api.md); ``operator`` implies
every other. Constants only: read by the command line without the web framework."""

SCOPES = ("operator", "issuer", "tsm", "reader")
