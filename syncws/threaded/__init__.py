"""The threaded I/O layer: blocking sockets, one thread per connection."""
