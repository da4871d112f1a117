"""Control socket, CLI, commit orchestration, process main."""
