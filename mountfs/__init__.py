"""The mount: pyfuse3 Operations over one inode table and one handle table,
with one module per kind of directory (the root, commit views, branch views)."""
