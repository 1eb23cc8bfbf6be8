"""agw layer."""
