"""What this CPU's matrix multiply reaches, measured by OpenVINO in the
calling process: the yardstick for the benchmarks' share of peak, which
they print in their first line (how it is measured: docs/speed.md)."""
import time

import numpy as np

CHAIN = 8
ROWS = (256, 1024)
WIDTH = 1024
PRECISIONS = ('f32', 'bf16', 'int8')


def _matmul_chain(rows: int, int8: bool):
    import openvino as ov
    import openvino.opset13 as ops
    rng = np.random.default_rng(0)

    def fake_quantize(node, bound, levels):
        low, high = ops.constant(np.float32(-bound)), ops.constant(
            np.float32(bound))
        return ops.fake_quantize(node, low, high, low, high, levels)

    x = ops.parameter([rows, WIDTH], np.float32, name='x')
    node = x
    for _ in range(CHAIN):
        weight = ops.constant(
            rng.standard_normal((WIDTH, WIDTH), np.float32) / WIDTH**0.5)
        if int8:
            # 255 levels (symmetric) for the weights, as NNCF writes them:
            # with 256, OpenVINO's CPU plugin keeps the product in float.
            node = fake_quantize(node, 4.0, 256)
            weight = fake_quantize(weight, 0.2, 255)
        node = ops.matmul(node, weight, False, False)
    return ov.Model([node], [x])


def peak_gflops(precision: str, threads: int, seconds: float = 1.0) -> float:
    """The best rate (GFLOP/s, a multiply-add counted once) of OpenVINO's
    matrix multiply in ``precision`` ('f32', 'bf16' or 'int8') on
    ``threads`` threads."""
    import openvino as ov
    best = 0.0
    for rows in ROWS:
        compiled = ov.Core().compile_model(
            _matmul_chain(rows, precision == 'int8'), 'CPU', {
                'INFERENCE_PRECISION_HINT':
                'bf16' if precision == 'bf16' else 'f32',
                'INFERENCE_NUM_THREADS': threads,
                'PERFORMANCE_HINT': 'LATENCY',
            })
        request = compiled.create_infer_request()
        x = np.random.default_rng(1).standard_normal((rows, WIDTH), np.float32)
        request.infer([x])  # warm-up
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 3:
            start = time.perf_counter()
            request.infer([x])
            times.append(time.perf_counter() - start)
        best = max(best, CHAIN * rows * WIDTH * WIDTH / min(times) / 1e9)
    return best


def measure_peaks(threads: int) -> dict:
    """``{precision: GFLOP/s}`` for every precision."""
    return {p: peak_gflops(p, threads) for p in PRECISIONS}
