"""File integrity: a policy, a fast scanner, a signed database, and the comparison."""
