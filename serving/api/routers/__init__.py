"""One router per resource; :mod:`serving.api.routes` gathers them."""
