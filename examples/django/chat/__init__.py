"""A chat on Django with syncws: rooms at ws/<room>/, one nickname per session."""
