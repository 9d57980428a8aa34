"""One router per resource of the HTTP API; ``paypost.api.app`` includes them."""
