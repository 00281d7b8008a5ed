"""A small shop: orders, and a receipt job pushed in the same transaction as the order."""
