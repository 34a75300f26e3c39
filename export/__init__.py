"""Compile a trained DiffWave into a deployable bundle (DESIGN.md, layer "export").

``step_graph``: one denoising step as ONNX (contract, folding, checks); ``fp16``: the float16
variant; ``parity``: the gate against PyTorch on ONNX Runtime CPU; ``profile``: optimisation
profile shapes and the equivalent polygraphy command; ``engine``: the TensorRT / TensorRT-RTX
plan builder (one implementation over the module object); ``engine_check``: ``--check`` with
polygraphy; ``bundle_export``: staging, publishing and ``model.json``.
"""
