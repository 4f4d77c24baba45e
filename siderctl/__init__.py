"""siderctl: operations tool for SiderHub's Redis-backed background jobs."""

__version__ = "0.1.0"
