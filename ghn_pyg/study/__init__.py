"""Studies built on the library: the weight-initialization study."""
