"""Generated gRPC/protobuf stubs for the kubelet pod-resources API (do not edit; see ../generate.py)."""
