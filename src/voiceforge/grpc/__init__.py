"""CosyVoice's gRPC protocol (``cosyvoice.CosyVoice/Inference``): the schema and its generated stubs.

``cosyvoice.proto`` is upstream's schema (FunAudioLLM/CosyVoice runtime/python/grpc), wire for
wire; ``cosyvoice_pb2*.py`` are generated from it by grpcio-tools and committed. Regenerate them
after editing the schema with ``scripts/grpc_stubs.sh``. :mod:`voiceforge.grpc.status` maps the
error hierarchy to gRPC status codes and back; the server side is
:mod:`voiceforge.server.grpc_service`, the client side the ``cosyvoice-grpc`` engine.
"""
