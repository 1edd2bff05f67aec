"""Private networks for containers: supd as a CNI runtime (spec 1.0)."""
