"""qmt-zmq-adapter: a ZeroMQ gateway for the QMT / miniQMT trading terminal."""

__version__ = "0.1.0"
