"""One router per resource, assembled by :mod:`backend.app.api.router`."""
