"""pyfuse3 filesystem: views, inode table, copy-on-write staging."""
