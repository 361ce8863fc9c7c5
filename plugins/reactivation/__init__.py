"""Patient reactivation pipeline: EMR extracts → care gaps → approved, consented outreach → reports."""

__version__ = "0.1.0"
