"""The chaos suite: killed workers, cut connections, a restarted server; nothing lost."""
