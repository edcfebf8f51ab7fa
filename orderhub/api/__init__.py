"""The REST API: thin DRF views over the orders services and selectors."""
