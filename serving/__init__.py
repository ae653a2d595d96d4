"""Serving: placements, business rules, next-best-offers, online state and batch exports."""
