"""Run by tests/test_onnx.py under `qemu-x86_64 -cpu Haswell` (an AVX2 CPU without VNNI or
AVX-512, emulated) and natively: prints, as JSON, what onnxruntime computes here.

    python tests/int8_probe.py ITEMS.json FOLDER [FOLDER ...]

- "saturating": the u8 x s8 integer product of [255]*4 and [127]*4 (129,540 exactly). AVX2
  without VNNI sums pairs in int16 and gives 65,534; a VNNI CPU gives 129,540. It tells the test
  which kernel family this process really ran.
- "spans": per exported folder, the Extractor's spans of ITEMS as [item, attribute, begin, end].
"""

from __future__ import annotations

import json
import sys


def saturating_product() -> int:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    a = np.full((1, 4), 255, np.uint8)
    b = np.full((4, 1), 127, np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return int(session.run(None, {"a": a})[0].item())


def main(argv: list[str]) -> None:
    items = json.loads(open(argv[0], encoding="utf-8").read())
    out: dict = {"saturating": saturating_product(), "spans": {}}
    if len(argv) > 1:
        from mjave import Extractor
        for folder in argv[1:]:
            results = Extractor.load(folder, device="cpu", threads=1).predict_batch(items)
            out["spans"][folder] = sorted([i, v["attribute"], v["begin"], v["end"]]
                                          for i, r in enumerate(results) for v in r["values"])
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
