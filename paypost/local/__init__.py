"""Tools for a local run and the demo: local servers, the reference practice-management system, the demo system."""
