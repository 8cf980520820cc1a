"""Mail and report templates shipped with nightwarden (see templates/)."""
