"""freshet: a streaming real-time recommender on Kafka, Faust, Redis and ONNX Runtime."""

__version__ = "0.1.0"
