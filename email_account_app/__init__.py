"""Email accounts that sync mail both ways for Frappe and ERPNext sites."""

__version__ = "0.1.0"
