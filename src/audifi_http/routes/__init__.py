"""Route modules; each adds its routes to the one table."""
