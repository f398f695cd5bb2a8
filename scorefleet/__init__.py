"""scorefleet: a Kubernetes operator and gRPC scorer for real-time ML scoring fleets."""

__version__ = "0.1.0"
