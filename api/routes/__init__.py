"""Route modules; each defines `router`, included by api.app.create_app."""
