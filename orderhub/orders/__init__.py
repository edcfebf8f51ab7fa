"""Orders and the catalogue: the customer-facing side of OrderHub."""
